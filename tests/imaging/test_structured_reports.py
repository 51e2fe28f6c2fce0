"""DICOM SRs of the lab's results (TID 1500 volumes, text SR of an answer) and the encapsulated PDF: they
reference their sources, keep the source study's patient and study attributes, and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medvlab.errors import ConfigError
from medvlab.imaging.dicom import STUDY_ATTRIBUTES
from medvlab.imaging.documents import encapsulate_pdf, source_headers
from medvlab.imaging.io import load
from medvlab.imaging.structured_reports import answer_report, measurement_report, sr_texts, sr_volumes
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS


def headers(folder: Path) -> list[Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]


def same_study(written: Dataset, source: Dataset) -> None:
    for tag in STUDY_ATTRIBUTES:
        assert str(written.get(tag, "")) == str(source.get(tag, "")), tag


def roundtrip(ds: Dataset, path: Path) -> Dataset:
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_measurement_report_gives_each_segment_its_volume(
    brain_data: dict[str, Path], brain_seg_label: Path, tmp_path: Path
) -> None:
    series = headers(brain_data["test_dicom"])
    seg = pydicom.dcmread(brain_seg_label)
    image = load(brain_data["test_dicom"])
    mask = load(brain_data["test_label"]).pixels > 0
    ml = float(mask.sum() * np.prod(image.spacing) / 1000)
    sr = roundtrip(measurement_report(series, seg, {"brain": ml}, model="bet"), tmp_path / "sr.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr_volumes(sr) == {"brain": pytest.approx(ml, abs=1e-3)}
    assert 1000 < ml < 2000  # Colin27's brain, mL
    same_study(sr, series[0])
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    }
    assert evidence == {str(seg.SOPInstanceUID), *(str(d.SOPInstanceUID) for d in series)}
    import highdicom as hd

    group = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups()[0]
    ref = group.referenced_segment
    assert ref is not None and ref.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert ref.referenced_segment_numbers == [1] and ref.has_source_images()
    assert (
        group.finding_type.meaning == seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning
    )


def test_measurement_report_refuses_what_it_cannot_reference(
    brain_data: dict[str, Path], brain_seg_label: Path, dicom_files: dict[str, Path]
) -> None:
    series = headers(brain_data["test_dicom"])
    seg = pydicom.dcmread(brain_seg_label, stop_before_pixels=True)
    with pytest.raises(ConfigError, match="No segment of the SEG is labelled 'liver'.*'brain'"):
        measurement_report(series, seg, {"liver": 1.0})
    with pytest.raises(ConfigError, match="must reference a DICOM SEG"):
        measurement_report(series, series[0], {"brain": 1.0})
    with pytest.raises(ConfigError, match="needs the DICOM images.*none were given"):
        measurement_report([], seg, {"brain": 1.0})


@pytest.mark.parametrize("language", ["en", "zh"])
def test_answer_report_carries_question_answer_model_adapter_and_disclaimer(
    dicom_files: dict[str, Path], tmp_path: Path, language: str
) -> None:
    source = pydicom.dcmread(dicom_files["CT_small.dcm"])
    question = "Any bleed?" if language == "en" else "有出血吗？"
    sr = answer_report(
        [source],
        question,
        "No bleed is seen.",
        model="google/medgemma-4b-it",
        adapter="ct-lora",
        disclaimer=DISCLAIMERS[language],
        language=language,
    )
    sr = roundtrip(sr, tmp_path / "answer.dcm")
    texts = sr_texts(sr)
    assert texts["Request"] == question and texts["Finding"] == "No bleed is seen."
    assert (
        texts["Algorithm Name"] == "google/medgemma-4b-it"
        and texts["Algorithm Parameters"] == "adapter: ct-lora"
    )
    assert texts["Comment"] == DISCLAIMERS[language]
    assert texts["Device Observer Model Name"] == "google/medgemma-4b-it"
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    same_study(sr, source)
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_answer_report_refuses_empty_text_and_non_dicom_sources(
    dicom_files: dict[str, Path], nibabel_data: Path
) -> None:
    source = pydicom.dcmread(dicom_files["CT_small.dcm"], stop_before_pixels=True)
    with pytest.raises(ConfigError, match="needs a question and an answer"):
        answer_report([source], "q", "  ", model="m", adapter=None, disclaimer=DISCLAIMERS["en"])
    nifti = load(nibabel_data / "anatomical.nii")
    assert source_headers(nifti.metadata) == []
    with pytest.raises(ConfigError, match="Load the DICOM series"):
        answer_report(
            source_headers(nifti.metadata), "q", "a", model="m", adapter=None, disclaimer=DISCLAIMERS["en"]
        )


def test_lab_answer_sr_and_encapsulated_pdf_keep_the_source_study(
    lab: Lab, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    """Through the services (what the CLI and the API write): the patient and study are the source's, not
    a new one dated today; non-ASCII names survive."""
    from medvlab.services.report import answer_sr, as_dicom

    source = pydicom.dcmread(dicom_files["CT_small.dcm"])
    source.PatientName, source.SpecificCharacterSet = "Müller^Jörg", "ISO_IR 100"
    source.AccessionNumber, source.ReferringPhysicianName = "ACC-7", "Doe^John"
    path = tmp_path / "ct.dcm"
    source.save_as(path, enforce_file_format=True)
    source = pydicom.dcmread(path)
    image = lab.load_image(path)
    answer = "No focal lesion.\n\n" + DISCLAIMERS["en"]  # as the lab streams it
    sr = roundtrip(
        pydicom.dcmread(pydicom.filebase.DicomBytesIO(answer_sr(lab, image, "Lesion?", answer))),
        tmp_path / "a.dcm",
    )
    same_study(sr, source)
    assert str(sr.PatientName) == "Müller^Jörg"
    assert sr_texts(sr)["Finding"] == "No focal lesion."  # the disclaimer is its own item, not doubled
    assert sr_texts(sr)["Algorithm Name"] == lab.model_id
    pdf = pydicom.dcmread(pydicom.filebase.DicomBytesIO(as_dicom(b"%PDF-1.4 report", image)))
    same_study(pdf, source)
    assert pdf.PatientID == source.PatientID != "" and pdf.StudyDate == source.StudyDate
    assert pdf.SourceInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_encapsulated_pdf_of_a_non_dicom_image_starts_its_own_study(nibabel_data: Path) -> None:
    ds = encapsulate_pdf(b"%PDF-1.4 x", load(nibabel_data / "anatomical.nii").metadata)
    assert ds.StudyInstanceUID and ds.StudyDate and ds.PatientID == "" and "SourceInstanceSequence" not in ds
