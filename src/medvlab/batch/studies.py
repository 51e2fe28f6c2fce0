"""Study discovery: what ``medvlab batch`` was pointed at, as a list of studies with stable ids.

A study is one image volume: a NIfTI file, a DICOM file, or a folder holding one DICOM series. A folder
that holds no DICOM files itself is searched (depth-first, sorted) for NIfTI files and series folders, so
``medvlab batch segment /data/ct/`` finds every study below it. A study in a PACS is named
``pacs://NAME/STUDY_UID`` (its largest image series) or ``pacs://NAME/STUDY_UID/SERIES_UID``; the worker
retrieves it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medvlab.errors import ConfigError
from medvlab.imaging.dicom import is_dicom_file

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
PACS_PREFIX = "pacs://"
"""A study in a configured PACS: ``pacs://NAME/STUDY_UID[/SERIES_UID]`` (retrieved by the worker)."""
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True)
class Study:
    """One study to process."""

    id: str
    """Stable id (name + hash of the resolved path): the key that makes a batch resumable."""
    source: str
    """A local path (file or series folder), or ``pacs://NAME/STUDY_UID[/SERIES_UID]``."""

    @classmethod
    def at(cls, path: Path) -> Study:
        resolved = path.resolve()
        name = path.name
        for suffix in (".gz", ".nii", *DICOM_SUFFIXES):
            name = name.removesuffix(suffix) if path.is_file() else name
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
        return cls(f"{name or 'study'}-{digest}", str(resolved))


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES) or name.endswith(DICOM_SUFFIXES):
        return True
    return path.suffix == "" and is_dicom_file(path)  # DICOM files often have no suffix at all


def _holds_dicom(folder: Path) -> bool:
    return any(
        p.is_file()
        and not p.name.lower().endswith(NIFTI_SUFFIXES)
        and (p.name.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(p))
        for p in folder.iterdir()
    )


def _walk(folder: Path) -> Iterable[Path]:
    if _holds_dicom(folder):  # a series folder is one study
        yield folder
        for p in sorted(folder.iterdir()):  # NIfTI files beside the series are studies of their own
            if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES):
                yield p
        return
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            yield from _walk(p)
        elif p.is_file() and _is_image_file(p):
            yield p


def parse_pacs(source: str) -> tuple[str, str, str | None]:
    """``pacs://NAME/STUDY_UID[/SERIES_UID]`` -> (PACS name, study UID, series UID or None)."""
    parts = source.removeprefix(PACS_PREFIX).strip("/").split("/")
    if not source.startswith(PACS_PREFIX) or len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(
            f"'{source}' is not a PACS study.",
            "Write pacs://NAME/STUDY_UID (or pacs://NAME/STUDY_UID/SERIES_UID), NAME as configured in "
            "MEDVLAB_PACS.",
        )
    bad = [uid for uid in parts[1:] if not _UID.fullmatch(uid)]
    if bad:
        raise ConfigError(
            f"'{bad[0]}' in '{source}' is not a DICOM UID.",
            "Copy the StudyInstanceUID from `medvlab pacs search` (digits and dots).",
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def discover(sources: Sequence[str | Path]) -> list[Study]:
    """The studies under ``sources`` (files, folders, ``pacs://NAME/STUDY_UID``), each once, in order."""
    studies: dict[str, Study] = {}
    for raw in sources:
        if str(raw).startswith(PACS_PREFIX):
            name, study_uid, series_uid = parse_pacs(str(raw))
            pacs = Study(f"pacs-{name}-{study_uid}" + (f"-{series_uid}" if series_uid else ""), str(raw))
            studies.setdefault(pacs.id, pacs)
            continue
        path = Path(os.path.expanduser(str(raw)))
        if not path.exists():
            raise ConfigError(
                f"'{raw}' does not exist.",
                "Name NIfTI files, DICOM files, DICOM series folders or folders holding them.",
            )
        found = [path] if path.is_file() else list(_walk(path))
        if path.is_dir() and not found:
            raise ConfigError(
                f"No NIfTI files or DICOM series were found under '{raw}'.",
                "Point at the folder that holds the studies (.nii/.nii.gz files or DICOM series folders).",
            )
        for p in found:
            study = Study.at(p)
            studies.setdefault(study.id, study)
    return list(studies.values())
