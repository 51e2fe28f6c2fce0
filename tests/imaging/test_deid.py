"""De-identification before storage, and no patient data in the logs.

The PHI tests plant identifying text in real files (pydicom's CT/MR slices, a real chest X-ray, a NIfTI
volume, a PNG and a JPEG) and search every byte of the de-identified result for it.
"""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medvlab.errors import ImageLoadError, UnsupportedFormatError
from medvlab.imaging import load
from medvlab.imaging.deid import (
    BASIC_PROFILE,
    PROFILE_RULES,
    deidentify_bytes,
    deidentify_file,
    profile_action,
)

PLANTED = b"planted"  # every planted value contains it; searched case-insensitively


def plant_phi(src: Path, dst: Path) -> Path:
    """A copy of the DICOM ``src`` with identifying text in the places a probe found it kept."""
    ds = pydicom.dcmread(src)
    ds.PatientName, ds.PatientID = "PLANTEDNAME^ZED", "PLANTEDID42"
    ds.StudyDescription, ds.SeriesDescription = "CT of PLANTEDNAME", "ZED PLANTEDNAME series"
    ds.ImageComments, ds.InstitutionName = "seen by PLANTEDDOC", "PLANTEDHOSP"
    ds.ReferringPhysicianName, ds.OperatorsName = "PLANTEDREF^DOC", "PLANTEDOP"
    ds.AdditionalPatientHistory, ds.ProtocolName = "PLANTEDHISTORY", "PLANTEDPROTOCOL"
    request = Dataset()
    request.RequestedProcedureDescription = "PLANTEDPROC for PLANTEDNAME"
    request.ScheduledProcedureStepDescription = "PLANTEDSTEP"
    request.ReasonForTheRequestedProcedure = "PLANTEDREASON"
    ds.RequestAttributesSequence = Sequence([request])
    block = ds.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "LO", "PLANTEDPRIVATE")
    region = Dataset()  # a kept sequence: its items are cleaned too
    region.CodeValue, region.CodingSchemeDesignator = "T-D3000", "SRT"
    region.CodeMeaning = "Chest of PLANTEDNAME"  # not in the table: the name scan empties it
    region.InstitutionName = "PLANTEDNESTEDHOSP"  # in the table, one level down
    region.private_block(0x0019, "ACME", create=True).add_new(0x02, "LT", "PLANTEDNESTEDPRIVATE")
    ds.AnatomicRegionSequence = Sequence([region])
    ds.save_as(dst)
    return dst


def planted_in(data: bytes) -> bool:
    return PLANTED in data.lower()


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


def test_profile_table_is_the_standard_one() -> None:
    assert len(PROFILE_RULES) > 650 and {r.source for r in PROFILE_RULES} == {"E.1-1", "medvlab"}
    expected = {
        "StudyDescription": "X",
        "SeriesDescription": "X",
        "ImageComments": "X",
        "RequestAttributesSequence": "X",
        "PatientComments": "X",
        "DerivationDescription": "X",
        "PerformingPhysicianName": "X",
        "RequestedProcedureDescription": "X/Z",
        "InstitutionName": "X/Z/D",
        "StationName": "X/Z/D",
        "ProtocolName": "X/D",
        "PatientName": "Z",
        "StudyInstanceUID": "U",
        "ContentSequence": "D",
        "GraphicAnnotationSequence": "D",
    }
    assert {k: BASIC_PROFILE[k] for k in expected} == expected
    assert "BodyPartExamined" not in BASIC_PROFILE and "PixelSpacing" not in BASIC_PROFILE
    assert profile_action(0x60024000) == "X" and profile_action(0x50001234) == "X"  # repeating groups
    assert profile_action(0x00280030) is None


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
    codes = [c.CodeValue for c in after.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"] and after.LongitudinalTemporalInformationModified == "MODIFIED"
    again = tmp_path / "again.dcm"
    deidentify_file(identified, again, seed="study-1")  # same seed: the same new UIDs (a series stays one)
    assert pydicom.dcmread(again).StudyInstanceUID == after.StudyInstanceUID


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm"])
def test_planted_phi_is_gone_everywhere(name: str, dicom_files: dict[str, Path], tmp_path: Path) -> None:
    src = plant_phi(dicom_files[name], tmp_path / "PLANTEDNAME^ZED_ct.dcm")
    assert planted_in(src.read_bytes())
    result = deidentify_bytes(src.read_bytes(), src.name, seed="s")
    assert (result.kind, result.suffix) == ("dicom", ".dcm")
    assert not planted_in(result.data)
    ds = pydicom.dcmread(io.BytesIO(result.data))
    found: list[str] = []
    ds.walk(lambda _, elem: found.append(str(elem.tag)) if elem.tag.is_private else None)
    assert found == []
    assert "StudyDescription" not in ds and "RequestAttributesSequence" not in ds
    assert ds.AnatomicRegionSequence[0].CodeValue == "T-D3000"  # kept, cleaned
    assert "InstitutionName" not in ds.AnatomicRegionSequence[0]
    assert ds.Modality == pydicom.dcmread(src).Modality
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(src).pixel_array)


def test_photos_keep_pixels_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "PLANTEDNAME^ZED")
    info.add_itxt("Author", "PLANTEDAUTHOR", zip=True)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG", pnginfo=info)
    clean = deidentify_bytes(png.getvalue(), "PLANTEDNAME.png")
    assert clean.suffix == ".png" and planted_in(png.getvalue()) and not planted_in(clean.data)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(clean.data))), pixels)

    exif = Image.Exif()
    exif[0x013B] = "PLANTEDARTIST"  # Artist
    for progressive in (False, True):  # progressive: many scans, tables between them
        jpg = io.BytesIO()
        Image.fromarray(pixels).save(
            jpg, format="JPEG", quality=90, exif=exif, comment=b"PLANTEDCOMMENT", progressive=progressive
        )
        assert planted_in(jpg.getvalue()) and b"Exif" in jpg.getvalue()
        stripped = deidentify_bytes(jpg.getvalue() + b"PLANTEDTRAILER", "x.jpeg")
        assert stripped.suffix == ".jpg" and not planted_in(stripped.data) and b"Exif" not in stripped.data
        decoded = [np.asarray(Image.open(io.BytesIO(b))) for b in (jpg.getvalue(), stripped.data)]
        assert np.array_equal(decoded[0], decoded[1])  # not re-encoded: the same pixels exactly

    with pytest.raises(ImageLoadError, match="could not be decoded"):
        deidentify_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "x.png")
    with pytest.raises(UnsupportedFormatError, match="not a format"):
        deidentify_bytes(b"just some notes about PLANTEDNAME", "notes.txt")


def test_nifti_header_text_and_extensions_are_blanked(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 50
    img = nib.Nifti1Image(data, np.diag([0.8, 0.9, 2.5, 1.0]))
    img.header["descrip"] = b"PLANTEDNAME^ZED scan"
    img.header["aux_file"] = b"PLANTEDAUX"
    img.header["db_name"] = b"PLANTEDDB"
    img.header["intent_name"] = b"PLANTEDINTENT"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"PLANTEDEXTENSION"))
    for name in ("PLANTEDNAME.nii.gz", "vol.nii"):
        src = tmp_path / name
        nib.save(img, src)
        gz = name.endswith(".gz")
        assert planted_in(gzip.decompress(src.read_bytes()) if gz else src.read_bytes())
        result = deidentify_bytes(src.read_bytes(), name)
        dst = tmp_path / f"clean{result.suffix}"
        dst.write_bytes(result.data)
        plain: Any = nib.load(dst)
        assert result.suffix == (".nii.gz" if gz else ".nii")
        assert not planted_in(gzip.decompress(result.data) if gz else result.data)
        assert len(plain.header.extensions) == 0 and plain.header["descrip"].tobytes().strip(b"\x00") == b""
        assert np.array_equal(np.asarray(plain.dataobj), data)
        before, after = load(src), load(dst)
        assert np.array_equal(before.pixels, after.pixels) and np.allclose(before.affine, after.affine)
        assert "description" not in after.metadata


def test_no_patient_data_in_logs(identified: Path, lab, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.DEBUG):
        image = load(identified)
        "".join(lab.ask(image, "What is shown?"))
        image.summary()
        deidentify_bytes(identified.read_bytes(), identified.name, seed="s")
    assert caplog.records  # something was logged
    text = caplog.text + repr(image.summary()) + repr(image.metadata)
    for secret in ("Doe", "MRN-4471234", "19610407", "Saint Example"):
        assert secret not in text
