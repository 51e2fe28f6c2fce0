"""De-identification before storage, and no patient data in the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest

from medvlab.imaging import load
from medvlab.imaging.deid import deidentify_file


@pytest.fixture
def identified(dicom_files: dict[str, Path], tmp_path: Path) -> Path:
    ds = pydicom.dcmread(dicom_files["CT_small.dcm"])
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-4471234"
    ds.PatientBirthDate = "19610407"
    ds.InstitutionName = "Saint Example Hospital"
    ds.ReferringPhysicianName = "House^Gregory"
    path = tmp_path / "jane.dcm"
    ds.save_as(path)
    return path


def test_basic_profile_removes_identity_and_keeps_pixels(identified: Path, tmp_path: Path) -> None:
    out = tmp_path / "anon.dcm"
    assert deidentify_file(identified, out, seed="study-1")
    before, after = pydicom.dcmread(identified), pydicom.dcmread(out)
    raw = out.read_bytes().decode("latin-1")
    for secret in ("Doe^Jane", "MRN-4471234", "19610407", "Saint Example Hospital", "House^Gregory"):
        assert secret not in raw
    assert after.PatientIdentityRemoved == "YES"
    assert after.StudyInstanceUID != before.StudyInstanceUID
    assert (after.pixel_array == before.pixel_array).all()
    again = tmp_path / "again.dcm"
    deidentify_file(
        identified, again, seed="study-1"
    )  # same seed: the same new UIDs (a series stays a series)
    assert pydicom.dcmread(again).StudyInstanceUID == after.StudyInstanceUID
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert (
        not deidentify_file(png, tmp_path / "copy.png")
        and (tmp_path / "copy.png").read_bytes() == png.read_bytes()
    )


def test_no_patient_data_in_logs(identified: Path, lab, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.DEBUG):
        image = load(identified)
        "".join(lab.ask(image, "What is shown?"))
        image.summary()
    assert caplog.records  # something was logged
    text = caplog.text + repr(image.summary()) + repr(image.metadata)
    for secret in ("Doe", "MRN-4471234", "19610407", "Saint Example"):
        assert secret not in text
