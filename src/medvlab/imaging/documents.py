"""A PDF report as a DICOM Encapsulated PDF object that belongs to the source study (kept under imaging/,
where every DICOM object medvlab reads or writes lives).

Built with pydicom directly: the IOD (PS3.3 A.45.1) is a handful of modules, and highdicom offers no
encapsulated-document class. Patient fields are left empty (medvlab never keeps PHI); the study and the
source images are referenced by UID, so a PACS files the report with its study.
"""

from __future__ import annotations

import datetime as dt
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


def encapsulate_pdf(
    pdf: bytes, source_metadata: dict[str, Any] | None = None, title: str = "medvlab report"
) -> Dataset:
    """Wrap PDF bytes in an Encapsulated PDF dataset referencing the source study/series when known."""
    meta = source_metadata or {}
    now = dt.datetime.now().astimezone()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    # Patient & study (type 2 patient fields present but empty: no PHI is ever kept by medvlab)
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = str(meta.get("StudyInstanceUID") or generate_uid())
    ds.StudyDate = now.strftime("%Y%m%d")
    ds.StudyTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
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
    sources = meta.get("SOPInstanceUIDs") or []
    if sources and meta.get("SOPClassUID"):
        refs = []
        for uid in sources:
            item = Dataset()
            item.ReferencedSOPClassUID = meta["SOPClassUID"]
            item.ReferencedSOPInstanceUID = uid
            refs.append(item)
        ds.SourceInstanceSequence = DicomSequence(refs)
    return ds
