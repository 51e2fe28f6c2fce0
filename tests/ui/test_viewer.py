"""The viewer without a browser: planes cut from a real volume (Colin27), windows that do not change with the
plane, square pixels, zoom, the mask and attention overlays, and the handlers' labels and summary line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medvlab.errors import ConfigError
from medvlab.imaging import load
from medvlab.imaging.planes import cut, pixel_mm, plane_count, render_plane, resolved_window, square_pixels
from medvlab.imaging.types import MedImage
from medvlab.seg.infer import Segmentation
from medvlab.services import Lab
from medvlab.services.viewing import View, render_view
from medvlab.ui.panels import viewer
from medvlab.ui.state import ChatSession

COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")
pytestmark = pytest.mark.skipif(not COLIN.exists(), reason="Colin27 is missing: apt-get install mricron-data")


@pytest.fixture(scope="module")
def colin() -> MedImage:
    return load(COLIN)


def test_planes_are_cut_across_the_volume_superior_up(colin: MedImage) -> None:
    slices, rows, cols = colin.pixels.shape
    assert (plane_count(colin, "axial"), plane_count(colin, "coronal"), plane_count(colin, "sagittal")) == (
        slices,
        rows,
        cols,
    )
    coronal = cut(colin.pixels, "coronal", rows // 2)
    sagittal = cut(colin.pixels, "sagittal", cols // 2)
    assert coronal.shape == (slices, cols) and sagittal.shape == (slices, rows)
    np.testing.assert_array_equal(coronal[0], colin.pixels[-1, rows // 2])  # the top row is the highest slice
    assert colin.orientation[0] == "S"  # slices go up: the last one is the most superior, drawn on top
    with pytest.raises(ConfigError, match="out of range"):
        cut(colin.pixels, "coronal", rows)
    with pytest.raises(ConfigError, match="axial"):
        plane_count(colin, "oblique")


def test_auto_window_is_the_volumes_not_the_planes(colin: MedImage) -> None:
    spec = resolved_window(colin, "auto")
    assert spec.kind == "range"
    # a plane through the edge of the head (mostly air) keeps the volume's window: dark, not stretched
    edge = render_plane(colin, "sagittal", 2, "auto")
    middle = render_plane(colin, "sagittal", colin.cols // 2, "auto")
    assert edge.mean() < middle.mean() / 4
    np.testing.assert_array_equal(render_plane(colin, "axial", 90, "auto"), viewer_axial(colin, 90))


def viewer_axial(image: MedImage, index: int) -> np.ndarray:
    from medvlab.imaging import render_slice

    return render_slice(image, index, "auto")


def test_square_pixels_and_zoom() -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    assert square_pixels(rgb, 3.0, 1.0).shape == (30, 20, 3)  # 3 mm rows drawn 3x taller
    assert square_pixels(rgb, 1.0, 1.0) is rgb
    image = MedImage(pixels=np.arange(5 * 8 * 8, dtype=np.int16).reshape(5, 8, 8), spacing=(4.0, 1.0, 1.0))
    assert pixel_mm(image, "coronal") == (4.0, 1.0)
    plain = render_view(image, View(plane="coronal", index=3)).rgb
    assert plain.shape == (20, 8, 3)
    zoomed = render_view(image, View(plane="coronal", index=3, zoom=2)).rgb
    assert zoomed.shape == plain.shape and not np.array_equal(zoomed, plain)
    with pytest.raises(ConfigError, match="Zoom"):
        View(zoom=20)


def test_mask_and_attention_are_overlays_that_can_be_switched_off(colin: MedImage) -> None:
    labels = (colin.pixels > np.percentile(colin.pixels, 70)).astype(np.uint8)
    k = colin.n_slices // 2
    grid = np.zeros((4, 4), np.float32)
    grid[0, 0] = 1.0
    plain = render_view(colin, View(index=k, mask=False, attention=False), labels, {k: grid})
    both = render_view(colin, View(index=k), labels, {k: grid})
    assert both.mask_drawn and both.attention_drawn and not plain.mask_drawn and not plain.attention_drawn
    assert not np.array_equal(plain.rgb, both.rgb)
    elsewhere = render_view(colin, View(index=k + 1), labels, {k: grid})
    assert elsewhere.mask_drawn and not elsewhere.attention_drawn  # attention only where it was computed
    coronal = render_view(colin, View(plane="coronal", index=100), labels, {k: grid})
    assert coronal.mask_drawn and not coronal.attention_drawn


def test_handlers_label_the_picture_with_the_volume_slice_number(lab: Lab, colin: MedImage) -> None:
    labels = (colin.pixels > np.percentile(colin.pixels, 70)).astype(np.uint8)
    seg = Segmentation(labels=labels, names=["brain"], volumes_ml={"brain": 1.0}, spec=None)  # type: ignore[arg-type]
    session = ChatSession(attention={90: np.ones((4, 4), np.float32)}, slices=[(90, 181, True)])
    out = viewer.render(lab, colin, "axial", 91, "auto", 1, ["mask", "attention"], seg, session, "English")
    assert out["label"] == "Axial · slice 91/181 · segmentation mask · attention map"
    zh = viewer.render(lab, colin, "coronal", 109, "brain", 2, [], seg, session, "中文")
    assert zh["label"] == "冠状位 · 第 109/217 层"
    near = viewer.render(lab, colin, "axial", 80, "auto", 1, ["attention"], None, session, "English")
    assert near["label"] == "Axial · slice 80/181 · attention maps on other slices (nearest: 91)"
    assert viewer.change_plane(colin, "sagittal")["maximum"] == 181
    assert viewer.set_window(40, 400) == "40,400"


def test_summary_line_in_both_languages(colin: MedImage) -> None:
    assert (
        viewer.describe(colin, 1)
        == "**NIfTI** · MR · 1 file(s) · 181 slices · 181 × 217 × 181 · spacing 1 × 1 × 1 mm"
    )
    assert (
        viewer.describe(colin, 1, "zh")
        == "**NIfTI** · MR · 1 个文件 · 181 层 · 181 × 217 × 181 · 间距 1 × 1 × 1 mm"
    )
    level, width = viewer.window_sliders(colin, "40,400")
    assert (level["value"], width["value"]) == (40, 400)
    assert isinstance(level, dict) and level["__type__"] == "update"
