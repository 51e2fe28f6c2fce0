"""A PDF report as a DICOM Encapsulated PDF object that belongs to the source study (kept under imaging/,
where every DICOM object medvlab reads or writes lives).

Built with pydicom directly: the IOD (PS3.3 A.45.1) is a handful of modules, and highdicom offers no
encapsulated-document class. The patient and study attributes are copied from the source as the caller
has it (de-identified when the source was), so a PACS files the report with its study; the source images
are referenced by UID.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from medvlab import __version__
from medvlab.imaging.dicom import STUDY_ATTRIBUTES


def source_headers(metadata: Mapping[str, Any]) -> list[Dataset]:
    """Header-only datasets of the images behind a ``MedImage`` (from its ``metadata``): patient and study
    attributes plus the UIDs an object needs to reference them. Empty for a non-DICOM image."""
    study = dict(metadata.get("source_study") or {})
    if not study.get("StudyInstanceUID") or not metadata.get("SOPClassUID"):
        return []
    headers = []
    for uid in metadata.get("SOPInstanceUIDs") or []:
        ds = Dataset()
        for tag in STUDY_ATTRIBUTES:
            setattr(ds, tag, study.get(tag, ""))
        ds.SeriesInstanceUID = str(metadata.get("SeriesInstanceUID") or "")
        ds.SOPClassUID = str(metadata["SOPClassUID"])
        ds.SOPInstanceUID = str(uid)
        if not all(str(v).isascii() for v in study.values()):  # values are decoded text: write UTF-8
            ds.SpecificCharacterSet = "ISO_IR 192"
        headers.append(ds)
    return headers


def encapsulate_pdf(
    pdf: bytes,
    source_metadata: Mapping[str, Any] | None = None,
    title: str = "medvlab report",
    *,
    sources: Sequence[Dataset] | None = None,
) -> Dataset:
    """Wrap PDF bytes in an Encapsulated PDF dataset in the source study, referencing its images.

    The source is ``sources`` (its DICOM headers) or else ``source_metadata`` (a ``MedImage.metadata``);
    with neither (a photo, a NIfTI) the report gets a study of its own and empty patient fields.
    """
    refs = list(sources) if sources else source_headers(source_metadata or {})
    now = dt.datetime.now().astimezone()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    # Patient & study: exactly the source's (type 2 fields present, empty when the source has none)
    first = refs[0] if refs else Dataset()
    for tag in STUDY_ATTRIBUTES:
        setattr(ds, tag, first.get(tag) or "")
    if "SpecificCharacterSet" in first:
        ds.SpecificCharacterSet = first.SpecificCharacterSet
    if not ds.StudyInstanceUID:  # no source study: the report starts one of its own, dated now
        ds.StudyInstanceUID = generate_uid()
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    # Encapsulated document series & equipment
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 999
    ds.Manufacturer = "medvlab"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"
    # Encapsulated document
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = DicomSequence([])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    if refs:
        items = []
        for src in refs:
            item = Dataset()
            item.ReferencedSOPClassUID = src.SOPClassUID
            item.ReferencedSOPInstanceUID = src.SOPInstanceUID
            items.append(item)
        ds.SourceInstanceSequence = DicomSequence(items)
    return ds
