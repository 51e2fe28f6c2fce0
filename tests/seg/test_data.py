"""Preprocessing shared by training and inference: orientation, resampling, scaling, pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medvlab.errors import ConfigError, ImageLoadError
from medvlab.imaging.types import MedImage
from medvlab.seg.data import (
    RandSyntheticHeadd,
    brain_distance,
    from_ras,
    normalize,
    pair,
    prepare,
    prepare_label,
    to_image_space,
    to_ras,
)
from medvlab.seg.model import LabelInfo, SegSpec


def test_to_ras_permutes_axes_and_spacing_exactly_and_is_undone() -> None:
    # (slice, row, col) -> LPS: slices go posterior (y), rows inferior (-z), cols right (-x)
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2], affine[3, 3] = 3.0, -1.0, -2.0, 1.0
    pixels = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    ras, ornt, spacing = to_ras(pixels, affine)
    assert ras.shape == (7, 5, 6)
    assert spacing.tolist() == [2.0, 3.0, 1.0]
    # cols step towards the right (RAS x, kept); slices go posterior and rows inferior (both flipped)
    np.testing.assert_array_equal(ras, pixels[::-1, ::-1, :].transpose(2, 0, 1))
    np.testing.assert_array_equal(from_ras(ras, ornt), pixels)


def test_prepare_resamples_to_model_spacing_and_back(brain_data: dict[str, Path]) -> None:
    from medvlab.imaging.io import load

    image = load(brain_data["test_image"])  # Colin27: 181 x 217 x 181 at 1 mm
    spec = SegSpec(spacing=(2.0, 2.0, 2.0))
    x, geo = prepare(image, spec)
    assert tuple(x.shape) == (1, 90, 108, 90)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert geo.image_shape == image.pixels.shape
    # a probability map in network space comes back on the image's own grid
    probs = torch.stack([1 - x[0], x[0]])
    back = to_image_space(probs, geo)
    assert back.shape == image.pixels.shape
    bright = image.pixels > np.percentile(image.pixels, 80)
    assert back[bright].mean() > 0.9  # bright voxels map back to where they were


def test_normalize_ct_and_mr() -> None:
    ct = torch.tensor([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    assert normalize(ct, "ct").tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    mr = torch.linspace(0, 1000, 10001)
    out = normalize(mr, "percentile")
    assert out.min() == 0 and out.max() == 1 and abs(float(out[5000]) - 0.5) < 0.01


def test_label_on_another_grid_is_refused() -> None:
    image = MedImage(np.zeros((8, 8, 8), np.float32))
    label = MedImage(np.zeros((8, 8, 9), np.uint8))
    spec = SegSpec(spacing=(1.0, 1.0, 1.0))
    _, geo = prepare(image, spec)
    with pytest.raises(ImageLoadError, match="same grid"):
        prepare_label(label, geo, spec, binarize=False)


def test_label_values_beyond_the_names_are_refused() -> None:
    image = MedImage(np.zeros((8, 8, 8), np.float32))
    label = MedImage(np.full((8, 8, 8), 3, np.uint8))
    spec = SegSpec(spacing=(1.0, 1.0, 1.0), labels=[LabelInfo("a")])
    _, geo = prepare(image, spec)
    with pytest.raises(ConfigError, match="--label-names"):
        prepare_label(label, geo, spec, binarize=False)
    assert int(prepare_label(label, geo, spec, binarize=True).max()) == 1


def test_flat_and_colour_images_are_refused() -> None:
    spec = SegSpec()
    with pytest.raises(ImageLoadError, match="single slice"):
        prepare(MedImage(np.zeros((1, 8, 8), np.float32)), spec)
    with pytest.raises(ImageLoadError, match="colour"):
        prepare(MedImage(np.zeros((4, 8, 8, 3), np.uint8), photometric="RGB"), spec)


def test_pairing_counts_must_agree(sphere_cases: dict[str, list[Path]]) -> None:
    pairs = pair([str(p) for p in sphere_cases["images"]], [str(p) for p in sphere_cases["labels"]])
    assert [p[0].name for p in pairs] == ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz", "case3.nii.gz"]
    with pytest.raises(ConfigError, match="4 image"):
        pair([str(p) for p in sphere_cases["images"]], [str(sphere_cases["labels"][0])])
    with pytest.raises(ImageLoadError, match="No images match"):
        pair(["/nowhere/*.nii.gz"], ["x"])


def test_synthetic_head_paints_only_outside_the_brain() -> None:
    x = torch.zeros((1, 40, 40, 40))
    y = torch.zeros((1, 40, 40, 40), dtype=torch.uint8)
    y[0, 12:28, 12:28, 12:28] = 1
    x[y > 0] = 100.0
    transform = RandSyntheticHeadd("percentile", prob=1.0)
    transform.set_random_state(0)
    out = transform({"image": x, "label": y, "dist": brain_distance(y, (2.0, 2.0, 2.0))})
    assert "dist" not in out
    image = out["image"][0]
    outside = y[0] == 0
    assert torch.unique(image[outside]).numel() > 3  # layers and noise were painted around the brain
    inside = image[y[0] > 0]
    assert float(inside.std()) < 1e-6  # the brain itself is untouched (only rescaled)


def test_argmax_channels_matches_torch_argmax() -> None:
    from medvlab.seg.data import argmax_channels

    scores = torch.randn(4, 9, 10, 11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(argmax_channels(scores), scores.argmax(0).to(torch.uint8))


def test_a_dicom_seg_label_lands_on_the_grid_of_its_series(
    brain_data: dict[str, Path], brain_seg_label: Path, dicom_files: dict[str, Path]
) -> None:
    from medvlab.imaging.io import load
    from medvlab.seg.data import is_dicom_seg, load_label

    series = load(brain_data["test_dicom"])
    label = load_label(brain_seg_label, series)
    truth = load(brain_data["test_label"]).pixels > 0
    assert is_dicom_seg(brain_seg_label) and not is_dicom_seg(brain_data["test_label"])
    assert label.pixels.shape == series.pixels.shape and np.array_equal(label.pixels > 0, truth)
    with pytest.raises(ConfigError, match="needs the DICOM series"):
        load_label(brain_seg_label)
    with pytest.raises(ConfigError, match="does not fit"):
        load_label(brain_seg_label, load(dicom_files["emri_small.dcm"]))  # another image entirely


def test_a_folder_of_dicom_segs_is_one_case_per_file(brain_seg_label: Path, tmp_path: Path) -> None:
    import shutil

    from medvlab.seg.data import expand

    for name in ("b.dcm", "a.dcm"):
        shutil.copy(brain_seg_label, tmp_path / name)
    assert [p.name for p in expand([tmp_path], "labels")] == ["a.dcm", "b.dcm"]
