"""DICOM loading on the real files that pydicom and pydicom-data ship."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError, MedvlabError
from medvlab.imaging import load, render_slice
from tests.helpers import dicom_test_files, write_series

ALL_FILES = dicom_test_files()


def _pydicom_decodes(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            ds.pixel_array  # noqa: B018
            return True
        except Exception:
            return False


def test_bundled_data_is_present() -> None:
    names = {p.name for p in ALL_FILES}
    assert {"CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm", "emri_small.dcm"} <= names
    assert len(ALL_FILES) > 120


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.name for p in ALL_FILES])
def test_every_decodable_file_loads_and_the_rest_fail_clearly(path: Path) -> None:
    if _pydicom_decodes(path):
        image = load(path)
        assert image.pixels.ndim in (3, 4)
        assert image.n_slices >= 1
        rgb = render_slice(image, 0)
        assert rgb.dtype == np.uint8 and rgb.shape[-1] == 3
    else:
        # Files pydicom itself cannot decode are allowed to load only if medvlab recovers them
        # (e.g. a missing transfer syntax it infers); otherwise the error must be medvlab's own.
        try:
            load(path)
        except MedvlabError as exc:
            fix = exc.fix
        else:
            fix = "recovered"
        assert fix, f"no fix for {path.name}"


def test_ct_values_are_hounsfield_units(dicom_files: dict[str, Path]) -> None:
    path = dicom_files["CT_small.dcm"]
    ds = pydicom.dcmread(path)
    image = load(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert image.modality == "CT"
    assert image.pixels.dtype == np.int16  # integral rescale keeps 2 bytes a voxel
    np.testing.assert_array_equal(image.pixels[0], expected)
    assert image.spacing[1:] == (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    np.testing.assert_allclose(image.affine[:3, 3], [float(v) for v in ds.ImagePositionPatient])
    assert image.window is None  # this file carries no window
    assert "PatientName" not in image.metadata
    real = load(dicom_files["693_UNCI.dcm"])  # a real 512x512 CT slice with a header window
    assert real.window is not None and (real.window.center, real.window.width) == (40.0, 100.0)


def test_monochrome1_radiograph_is_inverted_for_display(dicom_files: dict[str, Path]) -> None:
    image = load(dicom_files["RG1_UNCI.dcm"])
    assert image.photometric == "MONOCHROME1"
    assert image.modality == "CR"
    gray = render_slice(image, 0, "0,4096")[..., 0]
    values = image.pixels[0]
    # the lowest stored value must be rendered brightest
    assert (
        gray[np.unravel_index(values.argmin(), values.shape)]
        > gray[np.unravel_index(values.argmax(), values.shape)]
    )


@pytest.mark.parametrize(
    "compressed",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_lossless_transfer_syntaxes_match_uncompressed(dicom_files: dict[str, Path], compressed: str) -> None:
    reference = load(dicom_files["MR_small.dcm"]).pixels
    np.testing.assert_array_equal(load(dicom_files[compressed]).pixels, reference)


def test_multiframe_rle_matches_uncompressed(dicom_files: dict[str, Path]) -> None:
    a, b = load(dicom_files["emri_small.dcm"]), load(dicom_files["emri_small_RLE.dcm"])
    assert a.pixels.shape == (10, 64, 64)
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_ybr_is_converted_to_rgb(dicom_files: dict[str, Path]) -> None:
    rgb = load(dicom_files["SC_rgb.dcm"])
    ybr = load(dicom_files["SC_ybr_full_uncompressed.dcm"])
    assert ybr.photometric == rgb.photometric == "RGB"
    diff = np.abs(rgb.pixels.astype(int) - ybr.pixels.astype(int))
    assert diff.max() <= 8 and diff.mean() < 1  # YBR<->RGB round-trips lose a few levels at most


def test_palette_colour_and_16bit_rgb_become_uint8_rgb(dicom_files: dict[str, Path]) -> None:
    pal = load(dicom_files["OBXXXX1A.dcm"])
    assert pal.photometric == "RGB" and pal.pixels.dtype == np.uint8 and pal.pixels.shape == (1, 600, 800, 3)
    rgb16 = load(dicom_files["SC_rgb_16bit.dcm"])
    rgb8 = load(dicom_files["SC_rgb.dcm"])
    assert rgb16.pixels.dtype == np.uint8
    assert np.abs(rgb16.pixels.astype(int) - rgb8.pixels.astype(int)).max() <= 1


def test_jpeg_baseline_and_deflate_load(dicom_files: dict[str, Path]) -> None:
    assert load(dicom_files["SC_rgb_jpeg_dcmtk.dcm"]).pixels.shape == (1, 100, 100, 3)
    assert load(dicom_files["image_dfl.dcm"]).pixels.shape == (1, 512, 512)


def test_file_without_meta_header_is_recovered(dicom_files: dict[str, Path]) -> None:
    image = load(dicom_files["OT-PAL-8-face.dcm"])
    assert image.pixels.shape == (1, 480, 640, 3)


def test_series_is_sorted_by_position_not_by_file_name(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    zs = write_series(dicom_files["CT_small.dcm"], tmp_path / "series", n=12, spacing=2.5)
    image = load(tmp_path / "series")
    assert image.source_format == "dicom-series"
    assert image.pixels.shape == (12, 128, 128)
    means = image.pixels.reshape(12, -1).mean(axis=1)
    assert np.all(np.diff(means) > 9.9)  # slice k carries +10*k
    assert image.spacing[0] == pytest.approx(2.5)
    np.testing.assert_allclose(image.affine[2, 3], zs[0])
    np.testing.assert_allclose(image.affine[:3, 0], [0, 0, 2.5], atol=1e-6)
    assert image.orientation == "SPL"
    # world position of the last slice's origin is where that file says it is
    last = image.affine @ np.array([11, 0, 0, 1.0])
    assert last[2] == pytest.approx(zs[-1])


def test_series_picks_largest_or_requested_series(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_series(dicom_files["CT_small.dcm"], folder / "a", n=6, series_uid="1.2.3.4")
    write_series(dicom_files["CT_small.dcm"], folder / "b", n=3, series_uid="1.2.3.5")
    (folder / "README.txt").write_text("not dicom")
    image = load(folder)
    assert image.n_slices == 6 and image.metadata["other_series"] == {"1.2.3.5": 3}
    assert load(folder, series_uid="1.2.3.5").n_slices == 3
    with pytest.raises(ImageLoadError, match="Available series"):
        load(folder, series_uid="9.9")


def test_list_of_files_is_a_series(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    write_series(dicom_files["CT_small.dcm"], tmp_path / "s", n=4)
    files = sorted((tmp_path / "s").glob("*.dcm"))
    assert load(files).pixels.shape == (4, 128, 128)


def test_series_with_mismatched_slices_is_refused(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    write_series(dicom_files["CT_small.dcm"], folder, n=3, series_uid="1.2.3")
    ds = pydicom.dcmread(dicom_files["MR_small.dcm"])
    ds.SeriesInstanceUID = "1.2.3"
    ds.save_as(folder / "odd.dcm")
    with pytest.raises(ImageLoadError, match="series"):
        load(folder)


def test_truncated_dicom_gets_clear_error(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    data = dicom_files["CT_small.dcm"].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as info:
        load(cut)
    assert "cut.dcm" in str(info.value) and info.value.fix


def test_absurd_dimensions_are_refused_before_decoding(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    ds = pydicom.dcmread(dicom_files["CT_small.dcm"])
    ds.Rows, ds.Columns = 60000, 60000
    ds.NumberOfFrames = 5000
    bomb = tmp_path / "bomb.dcm"
    ds.save_as(bomb)
    with pytest.raises(ImageTooLargeError, match="limit"):
        load(bomb)


def test_limits_are_configurable(dicom_files: dict[str, Path]) -> None:
    with pytest.raises(ImageTooLargeError):
        load(dicom_files["CT_small.dcm"], limits=LoadLimits(max_pixels_per_slice=100))


def test_non_image_dicom_says_what_it_is(dicom_files: dict[str, Path]) -> None:
    with pytest.raises(ImageLoadError, match="without pixel data.*RT Plan"):
        load(dicom_files["rtplan.dcm"])
