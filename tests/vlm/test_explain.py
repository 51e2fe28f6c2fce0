"""Attention maps: grid geometry, colour mapping, and real attention from the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvlab.config import PromptOptions
from medvlab.errors import ExplainError
from medvlab.services import Lab
from medvlab.vlm.explain import attention_grids, cell_box, colormap, grid_to_heatmap, overlay
from medvlab.vlm.prompting import Turn, build_messages


@pytest.mark.parametrize(("grid", "height", "width"), [(4, 64, 64), (16, 1955, 1841), (16, 480, 640)])
def test_each_grid_cell_lands_on_its_pixels(grid: int, height: int, width: int) -> None:
    for r, c in [(0, 0), (grid - 1, grid - 1), (1, grid - 2), (grid // 2, 0)]:
        g = np.zeros((grid, grid), np.float32)
        g[r, c] = 1.0
        heat = grid_to_heatmap(g, height, width)
        assert heat.shape == (height, width)
        top, left, bottom, right = cell_box(r, c, grid, height, width)
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        assert top <= y < bottom and left <= x < right
        # the hot cell's centre is hotter than the far corner of the picture
        far = heat[0 if r >= grid // 2 else -1, 0 if c >= grid // 2 else -1]
        assert heat[(top + bottom) // 2, (left + right) // 2] > far


def test_colormap_and_overlay() -> None:
    cmap = colormap(np.array([0.0, 0.5, 1.0]))
    assert cmap[0].tolist() == [0, 0, 4] and cmap[-1].tolist() == [252, 255, 164]
    rgb = np.full((8, 8, 3), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[2, 3] = 1.0
    out = overlay(rgb, heat)
    assert out[0, 0].tolist() == [100, 100, 100]  # no attention: picture unchanged
    assert out[2, 3].tolist() != [100, 100, 100]


def test_tiny_model_attention_per_slice(lab: Lab, dicom_files: dict[str, Path]) -> None:
    volume = lab.load_image(dicom_files["emri_small.dcm"])
    options = PromptOptions(max_slices=3)
    turns = [Turn("user", "Which slice shows the lesion?", [volume])]
    messages = build_messages(turns, options)
    answer = "The second slice shows a bright lesion."  # any answer text can be explained
    grids = attention_grids(lab.backend, messages, answer)
    assert len(grids) == 3 and all(g.shape == (4, 4) for g in grids)  # 16 soft tokens a slice
    assert all(float(g.min()) >= 0 for g in grids) and sum(float(g.sum()) for g in grids) > 0
    assert lab.backend.model.config._attn_implementation == "sdpa"  # restored after the eager pass
    part = attention_grids(lab.backend, messages, answer, span=(0, 2))
    assert not all(np.allclose(a, b) for a, b in zip(grids, part, strict=True))
    with pytest.raises(ExplainError, match="span"):
        attention_grids(lab.backend, messages, answer, span=(10_000, 10_001))


def test_explain_service_draws_on_the_picture(lab: Lab, tmp_path: Path) -> None:
    Image.new("RGB", (200, 100), (30, 30, 30)).save(tmp_path / "wide.png")
    image = lab.load_image(tmp_path / "wide.png")
    turns = [Turn("user", "What is this?", [image])]
    heatmaps = lab.explain(turns, "A dark picture.")
    ((pic, label),) = heatmaps
    assert label == "attention" and pic.size == (512, 256)  # aspect ratio kept
    assert np.asarray(pic).std() > 0  # the heatmap changed the flat picture


@pytest.mark.parametrize(("row", "col"), [(0, 0), (0, 3), (2, 1), (3, 3)])
def test_soft_token_order_is_row_major_on_the_tiny_model(lab: Lab, row: int, col: int) -> None:
    """The geometry attention maps rely on: soft token k covers grid cell (k // g, k % g) of the picture."""
    import torch

    backend = lab.backend
    size = 64  # the tiny processor's input size; a 4x4 grid of 16-pixel cells
    dark = np.zeros((size, size, 3), np.uint8)
    lit = dark.copy()
    lit[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = 255

    def features(rgb: np.ndarray) -> torch.Tensor:
        pixels = backend.processor.image_processor(images=[Image.fromarray(rgb)], return_tensors="pt")[
            "pixel_values"
        ]
        with torch.no_grad():
            out = backend.model.model.get_image_features(pixel_values=pixels)
        feats = out.pooler_output if hasattr(out, "pooler_output") else out
        return feats.reshape(-1, feats.shape[-1])

    change = (features(lit) - features(dark)).norm(dim=-1)  # one value per soft token
    assert int(change.argmax()) == row * 4 + col
