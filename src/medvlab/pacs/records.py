"""What a PACS search finds and a store reports: QIDO-RS filters, study and series rows, stored objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medvlab.errors import RequestError

NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "DOC", "PR", "KO", "REG", "RTSTRUCT", "RTPLAN", "OT-DOC"})
"""Series that hold no images to load (results, documents, presentation states)."""


@dataclass(frozen=True)
class Filters:
    """QIDO-RS search filters; empty ones are not sent."""

    patient_id: str | None = None
    accession: str | None = None
    date: str | None = None
    """``YYYYMMDD`` or a range ``YYYYMMDD-YYYYMMDD`` (either end may be left open)."""
    modality: str | None = None
    study_uid: str | None = None

    def __post_init__(self) -> None:
        if self.date is not None:
            ends = self.date.split("-")
            if (
                len(ends) > 2
                or not all(e == "" or (len(e) == 8 and e.isdigit()) for e in ends)
                or not any(ends)
            ):
                raise RequestError(
                    f"The date '{self.date}' is not YYYYMMDD or a range YYYYMMDD-YYYYMMDD.",
                    "Write e.g. 20240131, or 20240101-20240131 (20240101- for 'since').",
                )

    def study_query(self) -> dict[str, str]:
        query = {
            "PatientID": self.patient_id,
            "AccessionNumber": self.accession,
            "StudyDate": self.date,
            "ModalitiesInStudy": self.modality,
            "StudyInstanceUID": self.study_uid,
        }
        return {k: v for k, v in query.items() if v}


@dataclass(frozen=True)
class StudyRow:
    """One study found by a search."""

    study_uid: str
    patient_id: str
    date: str
    accession: str
    description: str
    modalities: list[str]
    n_series: int | None
    n_instances: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SeriesRow:
    """One series of a study."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    number: int | None
    n_instances: int | None

    @property
    def is_image(self) -> bool:
        return self.modality.upper() not in NON_IMAGE_MODALITIES

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Stored:
    """What one STOW-RS request stored."""

    study_uid: str
    instances: list[dict[str, str]] = field(default_factory=list)
    """Per stored object: ``sop_class``, ``sop_instance_uid``, ``series_uid``, ``kind`` (SEG, PDF, SR)."""

    def as_dict(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "instances": self.instances}
