"""Window presets, automatic windows and MedGemma's 3-window CT encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medvlab.errors import ConfigError
from medvlab.imaging import (
    MEDGEMMA_CT_WINDOWS,
    load,
    medgemma_ct_rgb,
    parse_window,
    render_slice,
    sample_slices,
)
from medvlab.imaging.types import MedImage


def test_medgemma_windows_are_pinned() -> None:
    assert MEDGEMMA_CT_WINDOWS == ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))


def test_medgemma_rgb_values() -> None:
    hu = np.array([-2000, -1024, -135, 0, 40, 80, 215, 1024, 3000], dtype=np.int16)
    rgb = medgemma_ct_rgb(hu)
    assert rgb.dtype == np.uint8 and rgb.shape == (9, 3)
    np.testing.assert_array_equal(rgb[:, 0], [0, 0, 111, 128, 132, 137, 154, 255, 255])  # wide
    np.testing.assert_array_equal(rgb[:, 1], [0, 0, 0, 98, 128, 157, 255, 255, 255])  # soft tissue
    np.testing.assert_array_equal(rgb[:, 2], [0, 0, 0, 0, 128, 255, 255, 255, 255])  # brain


def test_presets_and_custom_windows() -> None:
    lung = parse_window("lung")
    assert (lung.low, lung.high) == (-1350.0, 150.0)
    custom = parse_window("40,400")
    assert (custom.low, custom.high) == (-160.0, 240.0)
    assert parse_window(None).kind == "auto"
    assert parse_window("MedGemma").kind == "medgemma"
    for name in ("mediastinum", "bone", "brain", "abdomen"):
        assert parse_window(name).kind == "range"


def test_bad_window_suggests_a_fix() -> None:
    with pytest.raises(ConfigError, match="did you mean 'lung'"):
        parse_window("lugn")
    with pytest.raises(ConfigError, match="positive"):
        parse_window("40,-5")
    with pytest.raises(ConfigError, match="CENTRE,WIDTH"):
        parse_window("a,b")


def test_render_uses_header_window_then_percentiles(dicom_files: dict[str, Path]) -> None:
    ct = load(dicom_files["693_UNCI.dcm"])
    assert ct.window is not None
    lo, hi = ct.window.low, ct.window.high
    out = render_slice(ct, 0)[..., 0]
    px = ct.pixels[0]
    assert np.all(out[px <= lo] == 0) and np.all(out[px >= hi] == 255)
    mr = MedImage(pixels=np.linspace(0, 1000, 10000, dtype=np.float32).reshape(1, 100, 100), modality="MR")
    auto = render_slice(mr, 0)[..., 0]
    assert auto.min() == 0 and auto.max() == 255


def test_render_lung_window_on_real_ct(dicom_files: dict[str, Path]) -> None:
    ct = load(dicom_files["693_UNCI.dcm"])
    lung = render_slice(ct, 0, "lung")
    bone = render_slice(ct, 0, "bone")
    assert lung.shape == (512, 512, 3)
    assert lung.mean() > bone.mean()  # a wide lung window shows soft tissue brighter than a bone window


def test_render_out_of_range_slice() -> None:
    img = MedImage(pixels=np.zeros((3, 4, 4), np.int16))
    with pytest.raises(ConfigError, match="0 to 2"):
        render_slice(img, 3)


def test_sample_slices() -> None:
    picks = sample_slices(300, 32)
    assert len(picks) == 32 and picks[0] == 0 and picks[-1] == 299 and picks == sorted(picks)
    assert sample_slices(10, 32) == list(range(10))
    assert sample_slices(9, 1) == [4]


def test_windowing_survives_zero_width_and_non_finite_values() -> None:
    import warnings

    from medvlab.imaging.windows import window_to_uint8

    values = np.array([np.nan, np.inf, -np.inf, 0.0, 1e38, -1e38, 5.0], dtype=np.float32)
    windows = [(0, 10), (1e38, 1e38), (5, 5), (np.nan, 1), (-np.inf, np.inf), (-3e38, 3e38), (0, np.nan)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (divide by zero, invalid cast) either
        for low, high in windows:
            out = window_to_uint8(values, low, high)
            assert out.dtype == np.uint8 and out.shape == values.shape
            assert out[0] == 0 and out[1] == 255 and out[2] == 0  # NaN dark, +inf bright, -inf dark
        assert window_to_uint8(values, 0, 10).tolist() == [0, 255, 0, 0, 255, 0, 128]
        assert window_to_uint8(values, 1e38, 1e38).tolist() == [0, 255, 0, 0, 0, 0, 0]


def test_render_of_non_finite_and_huge_values_never_fails() -> None:
    import warnings

    huge = np.full((2, 16, 16), 1e38, np.float32) + np.arange(256, dtype=np.float32).reshape(16, 16)
    huge[0, 0, :4] = [np.nan, np.inf, -np.inf, -1e38]
    nothing = np.full((1, 8, 8), np.nan, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for pixels, modality in ((huge, "CT"), (huge, "MR"), (nothing, "CT")):
            image = MedImage(pixels=pixels, modality=modality)
            for window in (None, "auto", "medgemma", "40,400", "bone"):
                rgb = render_slice(image, 0, window)
                assert rgb.dtype == np.uint8 and rgb.shape == (*pixels.shape[1:], 3)
    assert render_slice(MedImage(pixels=nothing), 0).max() == 0


def test_non_finite_window_spec_is_refused() -> None:
    for spec in ("nan,400", "40,inf"):
        with pytest.raises(ConfigError, match="finite"):
            parse_window(spec)
