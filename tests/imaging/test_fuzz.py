"""Property-based fuzzing of the loaders: whatever the bytes, only medvlab's own errors come out."""

from __future__ import annotations

import gzip
import io
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError
from medvlab.imaging import load_bytes

LIMITS = LoadLimits(max_pixels_per_slice=4096 * 4096, max_slices=512, max_voxels=64 * 2**20, max_file_mb=16)
FUZZ = settings(
    max_examples=int(__import__("os").environ.get("MEDVLAB_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def outcome(data: bytes, name: str) -> None:
    """Whatever the bytes: a MedImage, or one of medvlab's ImageLoadErrors (with a fix), nothing else."""
    fix: str | None = "loaded"
    try:
        image = load_bytes(data, name, LIMITS)
    except ImageLoadError as exc:
        fix = exc.fix
    else:
        assert image.pixels.ndim in (3, 4)
    assert fix


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from(["x.dcm", "x.png", "x.jpg", "x.nii", "x.nii.gz", "x.bin"]))
def test_random_bytes(data: bytes, name: str) -> None:
    outcome(data, name)


@FUZZ
@given(st.binary(min_size=0, max_size=2048))
def test_dicom_preamble_then_garbage(tail: bytes) -> None:
    outcome(b"\x00" * 128 + b"DICM" + tail, "x.dcm")


def _real(dicom_files: dict[str, Path]) -> bytes:
    return dicom_files["MR_small.dcm"].read_bytes()


@FUZZ
@given(st.data())
def test_mutated_real_dicom(dicom_files: dict[str, Path], data: st.DataObject) -> None:
    raw = bytearray(_real(dicom_files))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(128, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(132, len(raw)))
    outcome(bytes(raw[:cut]), "x.dcm")


@FUZZ
@given(st.data())
def test_mutated_png_and_nifti(data: st.DataObject) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    nii = bytearray(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)).to_bytes())
    for blob, name in ((png, "x.png"), (nii, "x.nii")):
        for _ in range(data.draw(st.integers(1, 6))):
            blob[data.draw(st.integers(8, len(blob) - 1))] = data.draw(st.integers(0, 255))
        outcome(bytes(blob), name)
        outcome(gzip.compress(bytes(blob))[: data.draw(st.integers(10, 400))], name + ".gz")


# --- compressed inputs: deflated, RLE, JPEG family DICOM and gzip streams ---------------------------

COMPRESSED = settings(
    max_examples=int(__import__("os").environ.get("MEDVLAB_FUZZ_EXAMPLES", "40")),
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow],
)
ENCAPSULATED = [
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPGExtended.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
]
EXTREMES = [b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"\x7f\xff\xff\xff", b"\x81\x00"]


def _compressed_inputs(dicom_files: dict[str, Path]) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, offset where the compressed payload starts)."""
    out: dict[str, tuple[bytes, int]] = {}
    for name in ENCAPSULATED:
        raw = dicom_files[name].read_bytes()
        out[name] = (raw, len(raw) - len(pydicom.dcmread(dicom_files[name]).PixelData))
    ds = pydicom.dcmread(dicom_files["MR_small.dcm"])
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out["deflated.dcm"] = (buf.getvalue(), 400)  # the meta header ends before byte 400
    vol = np.arange(6 * 5 * 4 * 3, dtype=np.int16).reshape(6, 5, 4, 3)
    out["x.nii.gz"] = (gzip.compress(nib.Nifti1Image(vol, np.eye(4)).to_bytes()), 10)
    out["y.nii.gz"] = (gzip.compress(nib.Nifti1Image(vol[..., 0], np.eye(4)).to_bytes()), 10)
    return out


@COMPRESSED
@given(st.data())
def test_mutated_compressed_inputs(dicom_files: dict[str, Path], data: st.DataObject) -> None:
    inputs = _compressed_inputs(dicom_files)
    name = data.draw(st.sampled_from(sorted(inputs)))
    raw, start = inputs[name]
    blob = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(start, len(blob) - 1))
        patch = data.draw(st.one_of(st.sampled_from(EXTREMES), st.binary(min_size=1, max_size=4)))
        blob[at : at + len(patch)] = patch
    cut = data.draw(st.one_of(st.just(len(blob)), st.integers(start, len(blob))))
    outcome(bytes(blob[:cut]), name)
