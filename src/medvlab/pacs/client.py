"""A DICOMweb client for one PACS, over the maintained ``dicomweb-client`` library: QIDO-RS searches,
WADO-RS retrieval of a series into files the imaging readers load (checked against the decode limits
before any pixel is fetched), STOW-RS storage with the PACS's answer checked instance by instance.

Every failure of the PACS becomes a lab error that says what to do: unreachable (503), credentials refused
(403, naming the variable that holds them), study or series not there (404), objects refused (502).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from medvlab.config import LoadLimits
from medvlab.errors import (
    ImageTooLargeError,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsStoreError,
    PacsUnavailableError,
)
from medvlab.pacs.config import PacsEndpoint
from medvlab.pacs.records import Filters, SeriesRow, Stored, StudyRow

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while instances arrive."""

STUDY_FIELDS = ("StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesNumber")


def _value(ds: Dataset, keyword: str, default: Any = "") -> Any:
    value = ds.get(keyword)
    return default if value is None or value == "" else value


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _dataset(row: dict[str, Any]) -> Dataset:
    return Dataset.from_json(row)


class PacsClient:
    """Search, retrieve and store on one DICOMweb endpoint (``dicomweb_client.DICOMwebClient``)."""

    def __init__(self, endpoint: PacsEndpoint) -> None:
        import requests
        from dicomweb_client import DICOMwebClient

        self.endpoint = endpoint
        session = requests.Session()
        headers: dict[str, str] = {}
        if endpoint.token_env:
            headers["Authorization"] = f"Bearer {endpoint.secret(endpoint.token_env)}"
        elif endpoint.user_env and endpoint.password_env:
            session.auth = (endpoint.secret(endpoint.user_env), endpoint.secret(endpoint.password_env))
        self.web = DICOMwebClient(
            endpoint.url.rstrip("/"), session=session, headers=headers, timeout=endpoint.timeout_s
        )
        # a PACS that is down answers at once; retrying 5 times with back-off would only hide it
        self.web.set_http_retry_params(retry=False)

    # -- errors ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _calling(self, what: str, missing: str | None = None) -> Iterator[None]:
        """Turn what ``requests`` raises while doing ``what`` into a lab error with the fix."""
        import requests

        e = self.endpoint
        try:
            yield
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise PacsAuthError(
                    f"PACS '{e.name}' refused the lab's credentials ({status}) while it tried to {what}.",
                    f"Check {e.credentials_hint}.",
                ) from exc
            if status == 404 and missing:
                raise PacsNotFoundError(f"{missing} is not in PACS '{e.name}'.", SEARCH_FIX) from exc
            raise PacsError(
                f"PACS '{e.name}' answered HTTP {status} while the lab tried to {what}.",
                "Look at the PACS's log; the request may be one it does not support.",
            ) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PacsUnavailableError(
                f"PACS '{e.name}' at {e.url} cannot be reached ({type(exc).__name__}).",
                f"Start Orthanc (or the PACS) at {e.url} or check MEDVLAB_PACS.",
            ) from exc

    # -- QIDO-RS -----------------------------------------------------------------------------------
    def search_studies(self, filters: Filters, limit: int = 100) -> list[StudyRow]:
        with self._calling("search for studies"):
            rows = self.web.search_for_studies(
                search_filters=filters.study_query(), fields=list(STUDY_FIELDS), limit=limit
            )
        out = []
        for row in rows:
            ds = _dataset(row)
            modalities = ds.get("ModalitiesInStudy") or []
            out.append(
                StudyRow(
                    study_uid=str(ds.StudyInstanceUID),
                    patient_id=str(_value(ds, "PatientID")),
                    date=str(_value(ds, "StudyDate")),
                    accession=str(_value(ds, "AccessionNumber")),
                    description=str(_value(ds, "StudyDescription")),
                    modalities=[modalities] if isinstance(modalities, str) else [str(m) for m in modalities],
                    n_series=_int(ds, "NumberOfStudyRelatedSeries"),
                    n_instances=_int(ds, "NumberOfStudyRelatedInstances"),
                )
            )
        return out

    def study(self, study_uid: str) -> StudyRow:
        """The study, or PacsNotFoundError."""
        found = self.search_studies(Filters(study_uid=study_uid), limit=1)
        if not found:
            raise PacsNotFoundError(f"Study {study_uid} is not in PACS '{self.endpoint.name}'.", SEARCH_FIX)
        return found[0]

    def search_series(self, study_uid: str, modality: str | None = None) -> list[SeriesRow]:
        """The series of a study (PacsNotFoundError when the study is not there)."""
        self.study(study_uid)
        query = {"Modality": modality} if modality else {}
        with self._calling("search for series", f"Study {study_uid}"):
            rows = self.web.search_for_series(
                study_instance_uid=study_uid, search_filters=query, fields=list(SERIES_FIELDS)
            )
        series = []
        for row in rows:
            ds = _dataset(row)
            series.append(
                SeriesRow(
                    study_uid=study_uid,
                    series_uid=str(ds.SeriesInstanceUID),
                    modality=str(_value(ds, "Modality", "OT")),
                    description=str(_value(ds, "SeriesDescription")),
                    number=_int(ds, "SeriesNumber"),
                    n_instances=_int(ds, "NumberOfSeriesRelatedInstances"),
                )
            )
        return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.series_uid))

    def pick_series(self, study_uid: str, series_uid: str | None = None) -> SeriesRow:
        """The series asked for, or (none asked) the image series of the study with the most instances."""
        series = self.search_series(study_uid)
        if series_uid is not None:
            for s in series:
                if s.series_uid == series_uid:
                    return s
            listed = ", ".join(f"{s.series_uid} ({s.modality})" for s in series) or "none"
            raise PacsNotFoundError(
                f"Series {series_uid} is not in study {study_uid} on PACS '{self.endpoint.name}'.",
                f"Pick one of its series: {listed}.",
            )
        images = [s for s in series if s.is_image]
        if not images:
            raise PacsNotFoundError(
                f"Study {study_uid} on PACS '{self.endpoint.name}' holds no image series.",
                "Pick another study (medvlab pacs search).",
            )
        return max(images, key=lambda s: s.n_instances or 0)

    # -- WADO-RS -----------------------------------------------------------------------------------
    def check_size(self, series: SeriesRow, limits: LoadLimits) -> int:
        """Refuse a series the decode limits would refuse, before any pixel is fetched; -> instances."""
        with self._calling("list the instances of a series", f"Series {series.series_uid}"):
            rows = self.web.search_for_instances(
                study_instance_uid=series.study_uid,
                series_instance_uid=series.series_uid,
                fields=["Rows", "Columns", "NumberOfFrames"],
            )
        if not rows:
            raise PacsNotFoundError(
                f"Series {series.series_uid} on PACS '{self.endpoint.name}' holds no instances.",
                SEARCH_FIX,
            )
        voxels, frames = 0, 0
        for row in rows:
            ds = _dataset(row)
            pixels = (_int(ds, "Rows") or 0) * (_int(ds, "Columns") or 0)
            n = _int(ds, "NumberOfFrames") or 1
            if pixels > limits.max_pixels_per_slice:
                raise ImageTooLargeError(
                    f"Series {series.series_uid} has {pixels:,}-pixel images, above the limit of "
                    f"{limits.max_pixels_per_slice:,}.",
                    "Pick a smaller series (MEDVLAB_MAX_SLICE_PIXELS raises the limit).",
                )
            voxels += pixels * n
            frames += n
        if frames > limits.max_slices or voxels > limits.max_voxels:
            raise ImageTooLargeError(
                f"Series {series.series_uid} holds {frames} images ({voxels:,} voxels), above the limits "
                f"({limits.max_slices} slices, {limits.max_voxels:,} voxels).",
                "Pick a smaller series (MEDVLAB_MAX_REQUEST_VOXELS raises the limit).",
            )
        return len(rows)

    def retrieve_series(
        self, series: SeriesRow, folder: Path, limits: LoadLimits, progress: Progress | None = None
    ) -> list[Path]:
        """The series' instances written into ``folder`` (neutral names), checked against ``limits``."""
        total = self.check_size(series, limits)
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        if progress:
            progress(0, total)
        with self._calling("retrieve a series", f"Series {series.series_uid}"):
            instances = self.web.iter_series(
                series.study_uid, series.series_uid, media_types=(("application/dicom", "*"),)
            )
            for i, ds in enumerate(instances):
                if i >= total + 1:  # the PACS sends more than it listed: stop before the limits do
                    raise ImageTooLargeError(
                        f"PACS '{self.endpoint.name}' sent more instances than series "
                        f"{series.series_uid} lists ({total}).",
                        "Retry once the series is complete on the PACS.",
                    )
                path = folder / f"instance-{i:05d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                paths.append(path)
                if progress:
                    progress(i + 1, max(total, i + 1))
        logger.info("retrieved %d instances of series %s", len(paths), series.series_uid)
        return paths

    def retrieve_study_objects(self, study_uid: str, series: SeriesRow) -> list[Dataset]:
        """The (small) instances of a non-image series: SR documents, encapsulated PDFs."""
        with self._calling("retrieve a series", f"Series {series.series_uid}"):
            return list(
                self.web.iter_series(study_uid, series.series_uid, media_types=(("application/dicom", "*"),))
            )

    # -- STOW-RS -----------------------------------------------------------------------------------
    def store(self, study_uid: str, objects: Sequence[tuple[str, Dataset]]) -> Stored:
        """Store (kind, dataset) objects of one study in one STOW-RS request; PacsStoreError when the PACS
        refuses any of them, naming which were stored and which were not."""
        for kind, ds in objects:
            if str(ds.get("StudyInstanceUID", "")) != study_uid:
                raise PacsStoreError(
                    f"The {kind} object belongs to study {ds.get('StudyInstanceUID')}, not {study_uid}.",
                    "This is a bug in medvlab: nothing was stored. Please report it.",
                )
        files = [part10(kind, ds) for kind, ds in objects]  # every object encodes before any is sent
        with self._calling("store results", f"Study {study_uid}"):
            answer = self.web.store_instances(files, study_instance_uid=study_uid)
        kinds = {str(ds.SOPInstanceUID): (kind, ds) for kind, ds in objects}
        failed = [
            str(item.get("ReferencedSOPInstanceUID", "?")) for item in answer.get("FailedSOPSequence", [])
        ]
        stored = [
            str(item.get("ReferencedSOPInstanceUID", "?")) for item in answer.get("ReferencedSOPSequence", [])
        ]
        result = Stored(
            study_uid,
            [
                {
                    "kind": kinds[uid][0],
                    "sop_instance_uid": uid,
                    "sop_class_uid": str(kinds[uid][1].SOPClassUID),
                    "series_uid": str(kinds[uid][1].SeriesInstanceUID),
                }
                for uid in stored
                if uid in kinds
            ],
        )
        if failed or len(result.instances) != len(objects):
            names = ", ".join(kinds[u][0] if u in kinds else u for u in failed) or "some objects"
            kept = ", ".join(i["kind"] for i in result.instances) or "nothing"
            raise PacsStoreError(
                f"PACS '{self.endpoint.name}' refused {names} (stored: {kept}).",
                "Look at the PACS's log for why; the stored objects can stay (their UIDs are unique).",
            )
        return result


def part10(kind: str, ds: Dataset) -> Dataset:
    """``ds`` as a DICOM Part 10 file (preamble, ``DICM``, file meta), read back from its own bytes.

    ``dicomweb-client`` sends what ``dcmwrite`` writes; a dataset built in memory has no preamble, and a PACS
    (Orthanc) stores and later serves it that way, which DICOMweb clients then cannot parse. Encoding here
    also proves every object encodes before any is stored.
    """
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    buffer = DicomBytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # pydicom raises many kinds for a bad element; nothing has been sent yet
        raise PacsStoreError(
            f"The {kind} object cannot be encoded as DICOM ({exc}); nothing was stored.",
            "This is a bug in medvlab; please report it with the command that failed.",
        ) from exc
    buffer.seek(0)
    return dcmread(buffer)


SEARCH_FIX = "Check the UID, or list what the PACS holds: medvlab pacs search --pacs NAME."
