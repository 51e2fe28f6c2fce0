"""Every DICOM object the lab writes passes dicom3tools' ``dciodvfy`` (Debian package dicom3tools) with no
errors, and keeps its source study's patient and study attributes: the SEG and TID 1500 SR of the shipped
brain model on the Colin27 series, an encapsulated PDF report and a text SR of an answer, and the same
for pydicom's real CT slice."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medvlab.imaging.dicom import STUDY_ATTRIBUTES
from medvlab.imaging.documents import encapsulate_pdf
from medvlab.imaging.io import load
from medvlab.imaging.structured_reports import answer_report, measurement_report
from medvlab.reports.pdf import ReportContent, build_pdf
from medvlab.seg.infer import Predictor
from medvlab.seg.model import LabelInfo, SegSpec
from medvlab.seg.outputs import write_dicom_seg
from medvlab.seg.study import segment_study
from medvlab.vlm.prompting import DISCLAIMERS

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy missing: apt-get install dicom3tools")


@pytest.fixture(scope="module")
def written(
    brain_data: dict[str, Path], dicom_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """name -> (object written, a source image it must share its study with)."""
    out = tmp_path_factory.mktemp("written")
    series = brain_data["test_dicom"]
    first = sorted(series.iterdir())[0]
    result = segment_study(
        series, Predictor.load("brain-mask"), dicom_seg=out / "brain_seg.dcm", dicom_sr=out / "brain_sr.dcm"
    )
    assert result.segmentation.volumes_ml["brain"] > 1000  # a real brain was measured
    pdf = build_pdf(ReportContent(model_id="tiny", qa=[("Brain volume?", "About 1.9 L.")]))
    encapsulate_pdf(pdf, result.image.metadata).save_as(out / "brain_pdf.dcm", enforce_file_format=True)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(series.iterdir())]
    answer_report(
        sources, "Brain volume?", "About 1.9 L.", model="tiny", adapter=None, disclaimer=DISCLAIMERS["en"]
    ).save_as(out / "brain_answer.dcm", enforce_file_format=True)

    ct = dicom_files["CT_small.dcm"]
    image = load(ct)
    labels = (image.pixels > 1000).astype(np.uint8)  # dense tissue in a real CT slice
    write_dicom_seg(labels, image, ct, SegSpec(labels=[LabelInfo("brain")]), out / "ct_seg.dcm")
    source = pydicom.dcmread(ct)
    seg = pydicom.dcmread(out / "ct_seg.dcm")
    measurement_report([source], seg, {"brain": 1.5}, model="threshold").save_as(
        out / "ct_sr.dcm", enforce_file_format=True
    )
    encapsulate_pdf(pdf, image.metadata).save_as(out / "ct_pdf.dcm", enforce_file_format=True)
    answer_report(
        [source],
        "有病变吗？",
        "未见明显病变。",
        model="tiny",
        adapter="a",
        disclaimer=DISCLAIMERS["zh"],
        language="zh",
    ).save_as(out / "ct_answer.dcm", enforce_file_format=True)
    return {p.stem: (p, first if p.stem.startswith("brain") else ct) for p in out.iterdir()}


NAMES = ["brain_seg", "brain_sr", "brain_pdf", "brain_answer", "ct_seg", "ct_sr", "ct_pdf", "ct_answer"]


@pytest.mark.parametrize("name", NAMES)
def test_written_object_passes_dciodvfy_and_keeps_the_study(
    written: dict[str, tuple[Path, Path]], name: str
) -> None:
    path, source_path = written[name]
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120, check=False)
    report = run.stdout + run.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report
    assert report.strip(), "dciodvfy printed nothing"  # it names the IOD it checked
    ds, source = pydicom.dcmread(path, stop_before_pixels=True), pydicom.dcmread(source_path)
    for tag in STUDY_ATTRIBUTES:
        assert str(ds.get(tag, "")) == str(source.get(tag, "")), tag


def test_dciodvfy_does_find_errors(written: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """The check can fail: a SEG without its Segment Sequence is reported."""
    ds = pydicom.dcmread(written["ct_seg"][0])
    del ds.SegmentSequence
    ds.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    run = subprocess.run(
        [DCIODVFY, str(tmp_path / "broken.dcm")], capture_output=True, text=True, check=False
    )
    assert any(line.startswith("Error") for line in (run.stdout + run.stderr).splitlines())
