"""DICOM de-identification (PS3.15 Annex E basic profile) before anything is stored or sent elsewhere.

dicognito does the work: it removes or replaces the identifying attributes of the basic profile (names,
IDs, dates, addresses, free-text comments, private tags) and remaps UIDs consistently, so a series stays
a series. Pixel data is left as it is; burned-in annotations are not detected (medvlab warns about
``BurnedInAnnotation = YES``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom

from medvlab.imaging.dicom import is_dicom_file

logger = logging.getLogger(__name__)


def deidentify_file(src: Path, dst: Path, seed: str | None = None) -> bool:
    """Write a de-identified copy of a DICOM ``src`` to ``dst``; other files are copied as they are.

    Returns True when the file was DICOM. ``seed`` makes the UID/ID remapping reproducible across files
    of one study (same seed, same new UIDs).
    """
    from dicognito.anonymizer import Anonymizer

    if not is_dicom_file(src):
        dst.write_bytes(src.read_bytes())
        return False
    ds = pydicom.dcmread(src, force=True)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        logger.warning(
            "a DICOM file declares burned-in annotation; its pixels may still identify the patient"
        )
    Anonymizer(seed=seed).anonymize(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "PS3.15 basic profile (dicognito)"
    ds.save_as(dst, enforce_file_format=False)
    return True
