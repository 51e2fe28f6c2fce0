"""PDF reports and DICOM Encapsulated PDF, read back with pypdf and pydicom."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pypdf import PdfReader

from medvlab.imaging.documents import encapsulate_pdf
from medvlab.kb.retrieve import Hit
from medvlab.kb.store import Snippet
from medvlab.reports.pdf import ReportContent, build_pdf
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS, Turn


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


def image_count(pdf: bytes) -> int:
    return sum(len(page.images) for page in PdfReader(io.BytesIO(pdf)).pages)


def test_chinese_report_has_every_part(lab: Lab, dicom_files: dict[str, Path], tmp_path: Path) -> None:
    image = lab.load_image(dicom_files["RG1_UNCI.dcm"])
    question = "肺部有没有异常？"
    turns = [Turn("user", question, [image])]
    answer = "".join(lab.chat(turns))
    findings = {
        "findings": "右肺上叶结节",
        "location": "右肺上叶",
        "size": "8毫米",
        "impression": "结节",
        "confidence": "low",
        "recommendations": "3个月后复查CT",
    }
    heatmaps = lab.explain(turns, answer)
    hit = Hit(Snippet("右肺上叶结节", "右肺上叶尖段见实性结节。", "lungs.csv"), 1, 0.1, ("bm25",))
    pdf = lab.report(
        image,
        [(question, answer)],
        structured=findings,
        heatmaps=heatmaps,
        citations=[hit],
        volumes_ml={"左肺": 1523.4},
    )
    text = pdf_text(pdf)
    for expected in (
        "medvlab 科研报告",
        question,
        "右肺上叶",
        "3个月后复查CT",
        "[1] 右肺上叶结节 (lungs.csv)",
        "1523.4",
        "tiny",
        "dicom CR 1x1955x1841",
        DISCLAIMERS["zh"].removeprefix("⚠️ ")[:20],
    ):
        assert expected in text.replace("\n", ""), expected
    assert (
        text.count(DISCLAIMERS["zh"].removeprefix("⚠️ ")[:12]) == 2
    )  # top and bottom, not a third in the answer
    assert image_count(pdf) == 2  # the slice and its attention map
    assert len(pdf) < 1_500_000  # pictures are downscaled for the report
    if shutil.which("pdftoppm"):  # look at it as a person would (the PNG is kept for inspection)
        subprocess.run(
            ["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", "-", str(tmp_path / "page")],
            input=pdf,
            check=True,
        )
        page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"))
        assert page.mean() < 250  # not a blank page


def test_english_report_without_extras() -> None:
    content = ReportContent(
        model_id="google/medgemma-4b-it",
        qa=[("Any effusion?", "No effusion.")],
        pictures=[(Image.new("RGB", (64, 64), (90, 90, 90)), "CT slice 1/1")],
    )
    text = pdf_text(build_pdf(content))
    assert "medvlab research report" in text and "google/medgemma-4b-it" in text and "No effusion." in text
    assert "Structured findings" not in text and "Segmentation volumes" not in text


def test_encapsulated_pdf_belongs_to_the_source_study(
    lab: Lab, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    image = lab.load_image(dicom_files["CT_small.dcm"])
    src = pydicom.dcmread(dicom_files["CT_small.dcm"])
    pdf = build_pdf(ReportContent(model_id="tiny", qa=[("q", "a")]))
    path = tmp_path / "report.dcm"
    encapsulate_pdf(pdf, image.metadata, title="CT report").save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == pydicom.uid.EncapsulatedPDFStorage and ds.Modality == "DOC"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.EncapsulatedDocument[: ds.EncapsulatedDocumentLength] == pdf
    ref = ds.SourceInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID and ref.ReferencedSOPClassUID == src.SOPClassUID
    assert ds.PatientName == src.PatientName and ds.PatientID == src.PatientID
    assert ds.DocumentTitle == "CT report"
    assert ds.StudyDate == src.StudyDate and ds.StudyTime == src.StudyTime


@pytest.mark.parametrize("language", ["en", "zh"])
def test_report_labels_follow_language(language: str) -> None:
    text = pdf_text(build_pdf(ReportContent(model_id="m", language=language, qa=[("q", "a")])))
    assert ("问题与回答" in text) == (language == "zh")


def test_without_a_cjk_font_the_standard_cid_font_still_carries_chinese(tmp_path: Path) -> None:
    import sys

    script = (
        "import io, sys, medvlab.reports.pdf as P\n"
        "P.CJK_FONT_FILES = ()\n"
        "content = P.ReportContent(model_id='m', language='zh', qa=[('肺部有结节吗？', '右肺上叶结节')])\n"
        "pdf = P.build_pdf(content)\n"
        "from pypdf import PdfReader\n"
        "text = ''.join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)\n"
        "print(P._font(), '右肺上叶结节' in text, '科研报告' in text)\n"
    )
    env = {"MEDVLAB_CJK_FONT": "", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["STSong-Light", "True", "True"], out.stderr
