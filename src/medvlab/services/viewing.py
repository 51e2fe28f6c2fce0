"""Viewing: one picture of an image for the viewer — a plane (axial / coronal / sagittal) at a slice, a
window, square pixels, zoom — with the segmentation mask and the attention of the last answer drawn on it.

The web viewer calls :func:`render_view`; anything else that shows a plane (the CLI, a report) can too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from medvlab.errors import ConfigError
from medvlab.imaging.planes import (
    check_plane,
    cut,
    pixel_mm,
    plane_count,
    render_plane,
    square_pixels,
    zoom_centre,
)
from medvlab.imaging.types import MedImage

MAX_ZOOM = 8.0


@dataclass(frozen=True)
class View:
    """What the viewer shows: which plane and slice, the window, the zoom and the overlays switched on."""

    plane: str = "axial"
    """axial, coronal or sagittal (a 2-D picture has only its one axial plane)."""
    index: int = 0
    """0-based slice of that plane."""
    window: str | None = None
    """A window preset, ``C,W`` or None / ``auto``."""
    zoom: float = 1.0
    """1 to ``MAX_ZOOM``: the centre 1/zoom of the picture, enlarged."""
    mask: bool = True
    """Draw the segmentation mask when there is one."""
    attention: bool = True
    """Draw the attention of the last answer on the axial slices it was computed for."""

    def __post_init__(self) -> None:
        check_plane(self.plane)
        if not (np.isfinite(self.zoom) and 1.0 <= self.zoom <= MAX_ZOOM):
            raise ConfigError(f"Zoom {self.zoom} is out of range.", f"Pick a zoom from 1 to {MAX_ZOOM:g}.")


@dataclass(frozen=True)
class Rendered:
    """The picture and what was drawn on it."""

    rgb: np.ndarray
    plane: str
    index: int
    """0-based slice shown."""
    total: int
    """Slices of this plane."""
    mask_drawn: bool
    attention_drawn: bool


def clamp_index(image: MedImage, plane: str, index: int) -> int:
    return min(max(int(index), 0), plane_count(image, plane) - 1)


def render_view(
    image: MedImage,
    view: View,
    labels: np.ndarray | None = None,
    attention: Mapping[int, np.ndarray] | None = None,
) -> Rendered:
    """``labels`` is a mask on the image's grid ``(slice, row, col)``; ``attention`` maps a 0-based axial
    slice to the attention grid of the last answer over it."""
    from medvlab.seg.overlay import draw_overlay
    from medvlab.vlm.explain import grid_to_heatmap, overlay

    plane = "axial" if image.n_slices < 2 else check_plane(view.plane)
    index = clamp_index(image, plane, view.index)
    rgb = render_plane(image, plane, index, view.window)
    mask_drawn = attention_drawn = False
    if view.mask and labels is not None and labels.shape == image.pixels.shape[:3]:
        rgb = draw_overlay(rgb, np.ascontiguousarray(cut(labels, plane, index)))
        mask_drawn = True
    grid = (attention or {}).get(index) if plane == "axial" else None
    if view.attention and grid is not None:
        rgb = overlay(rgb, grid_to_heatmap(grid, rgb.shape[0], rgb.shape[1]))
        attention_drawn = True
    row_mm, col_mm = pixel_mm(image, plane)
    rgb = zoom_centre(square_pixels(rgb, row_mm, col_mm), view.zoom)
    return Rendered(rgb, plane, index, plane_count(image, plane), mask_drawn, attention_drawn)
