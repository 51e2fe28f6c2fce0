"""load() on NIfTI, PNG/JPG and bad inputs."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medvlab.errors import ImageLoadError, ImageTooLargeError, UnsupportedFormatError
from medvlab.imaging import load, load_bytes


def test_nifti_geometry_matches_nibabel(nibabel_data: Path) -> None:
    path = nibabel_data / "anatomical.nii"
    ref = nib.load(str(path))
    data = np.asarray(ref.dataobj)
    image = load(path)
    assert image.source_format == "nifti"
    assert image.orientation == "SPL"
    assert sorted(image.pixels.shape) == sorted(data.shape)
    # Every voxel must sit at the same place in the world: pick some and compare values there.
    rng = np.random.default_rng(0)
    inv = np.linalg.inv(image.affine)
    for _ in range(25):
        ijk = [int(rng.integers(0, s)) for s in data.shape]
        ras = ref.affine @ np.array([*ijk, 1.0])
        lps = np.array([-ras[0], -ras[1], ras[2], 1.0])
        k, j, i = np.rint(inv @ lps)[:3].astype(int)
        assert image.pixels[k, j, i] == data[tuple(ijk)]
    assert sorted(image.spacing) == pytest.approx(sorted(float(z) for z in ref.header.get_zooms()[:3]))


def test_4d_nifti_gz_needs_a_volume_and_reads_the_chosen_one(nibabel_data: Path) -> None:
    ref = nib.load(str(nibabel_data / "example4d.nii.gz"))
    with pytest.raises(ImageLoadError, match="holding 2 volumes"):  # never silently cut
        load(nibabel_data / "example4d.nii.gz")
    image = load(nibabel_data / "example4d.nii.gz", volume=1)
    assert image.pixels.ndim == 3
    assert image.pixels.size == int(np.prod(ref.shape[:3]))
    assert sorted(image.pixels.ravel().tolist()) == sorted(np.asarray(ref.dataobj[..., 1]).ravel().tolist())


def test_nifti_bytes_roundtrip(nibabel_data: Path) -> None:
    data = (nibabel_data / "standard.nii.gz").read_bytes()
    assert load_bytes(data, "scan.nii.gz").pixels.size == load(nibabel_data / "standard.nii.gz").pixels.size


def test_truncated_nifti_gets_clear_error(nibabel_data: Path, tmp_path: Path) -> None:
    raw = gzip.decompress((nibabel_data / "standard.nii.gz").read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(ImageLoadError, match="cut.nii.gz"):
        load(cut)


def test_huge_nifti_header_is_refused(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    img.header.set_data_shape((4000, 4000, 4000))
    path = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[:348] = img.header.binaryblock
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageTooLargeError):
        load(path)


def test_png_gray16_rgb_and_jpeg(tmp_path: Path) -> None:
    gray = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    g = load(tmp_path / "g16.png")
    assert g.photometric == "MONOCHROME2" and g.pixels.shape == (1, 48, 64)
    np.testing.assert_array_equal(g.pixels[0], gray)
    rgb = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(load(tmp_path / "c.png").pixels[0], rgb)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    j = load(tmp_path / "c.jpg")
    assert j.source_format == "jpeg" and j.pixels.shape == (1, 30, 40, 3)


def test_bad_inputs_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("this is not an image")
    with pytest.raises(UnsupportedFormatError, match="not a recognised"):
        load(tmp_path / "notes.txt")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="does not exist"):
        load(tmp_path / "missing.dcm")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImageLoadError, match="empty"):
        load(tmp_path / "folder")
    png = tmp_path / "trunc.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(ImageLoadError, match="trunc.png"):
        load(png)
    with pytest.raises(UnsupportedFormatError):
        load_bytes(b"\x00" * 1000, "blob.bin")


def test_png_pixel_limit(tmp_path: Path) -> None:
    from medvlab.config import LoadLimits

    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError, match="100x100"):
        load(tmp_path / "a.png", limits=LoadLimits(max_pixels_per_slice=5000))


def test_degenerate_affine_still_loads(tmp_path: Path) -> None:
    # found by the fuzzer: a NIfTI whose affine has a zero axis
    affine = np.eye(4)
    affine[1, 1] = 0.0
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), None)
    img.header.set_sform(affine, code=1)  # only the sform: a qform cannot even be written for it
    nib.save(img, tmp_path / "flat.nii")
    image = load(tmp_path / "flat.nii")
    assert image.pixels.shape == (4, 3, 2) and image.orientation == "SPL"


def _scaled_nifti(data: np.ndarray, slope: float, inter: float) -> bytes:
    """A .nii whose header scaling is set byte-wise (nibabel would recompute it when saving)."""
    raw = bytearray(nib.Nifti1Image(data, np.eye(4)).to_bytes())
    raw[112:120] = np.array([slope, inter], dtype="<f4").tobytes()  # scl_slope, scl_inter
    return bytes(raw)


def test_nifti_scaled_to_only_inf_is_refused() -> None:
    data = _scaled_nifti(np.arange(1, 25, dtype=np.int16).reshape(2, 3, 4), 3.4e38, 3.4e38)
    with pytest.raises(ImageLoadError, match="no finite voxel values") as info:
        load_bytes(data, "inf.nii")
    assert "scl_slope" in str(info.value.fix)


def test_nifti_with_huge_intercept_or_some_nan_loads_and_renders() -> None:
    import warnings

    from medvlab.imaging import render_slice

    shifted = load_bytes(_scaled_nifti(np.arange(24, dtype=np.int16).reshape(2, 3, 4), 1.0, 1e38), "s.nii")
    assert np.isfinite(shifted.pixels).all()
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    values[0, 0, :] = [np.nan, np.inf, -np.inf, np.nan]
    holes = load_bytes(nib.Nifti1Image(values, np.eye(4)).to_bytes(), "holes.nii")
    assert np.isfinite(holes.pixels).all() and holes.metadata["nonfinite_voxels"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for image in (shifted, holes):
            for window in (None, "auto", "medgemma"):
                assert render_slice(image, 0, window).dtype == np.uint8


def test_a_text_file_without_suffix_is_not_called_dicom(tmp_path: Path) -> None:
    from medvlab.errors import UnsupportedFormatError

    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(UnsupportedFormatError, match="not a recognised medical image"):
        load(path)
