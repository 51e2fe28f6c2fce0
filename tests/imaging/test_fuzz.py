"""Property-based fuzzing of the loaders: whatever the bytes, only medvlab's own errors come out."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medvlab.config import LoadLimits
from medvlab.errors import MedvlabError
from medvlab.imaging import load_bytes

LIMITS = LoadLimits(max_pixels_per_slice=4096 * 4096, max_slices=512, max_voxels=64 * 2**20, max_file_mb=16)
FUZZ = settings(
    max_examples=int(__import__("os").environ.get("MEDVLAB_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def outcome(data: bytes, name: str) -> None:
    try:
        image = load_bytes(data, name, LIMITS)
    except MedvlabError:
        return
    assert image.pixels.ndim in (3, 4)


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
