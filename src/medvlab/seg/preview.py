"""A preview picture of a segmentation: axial, coronal and sagittal planes through the structures' centre,
the mask drawn over each (translucent fill + outline), side by side in one PNG with square pixels.

Like TotalSegmentator's ``--preview``, it is for a quick look that the mask sits where it should; the
planes are cut and windowed by :mod:`medvlab.imaging.planes`, so they look as they do in the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medvlab.imaging.planes import PLANES, cut, pixel_mm, render_plane, square_pixels
from medvlab.imaging.types import MedImage
from medvlab.seg.overlay import draw_overlay

PANEL = 320
"""Height in pixels of each plane in the picture."""
GAP = 8


@dataclass(frozen=True)
class Preview:
    rgb: np.ndarray
    """(rows, cols, 3) uint8: axial | coronal | sagittal."""
    indices: dict[str, int]
    """0-based index of the plane shown for each orientation (slice / row / column)."""

    def caption(self, image: MedImage) -> str:
        """'axial 91/181 · coronal 110/217 · sagittal 90/181' (1-based, as the viewer counts)."""
        totals = {"axial": image.n_slices, "coronal": image.rows, "sagittal": image.cols}
        return " · ".join(f"{p} {self.indices[p] + 1}/{totals[p]}" for p in PLANES)


def centre(labels: np.ndarray) -> tuple[int, int, int]:
    """(slice, row, col) through which to cut: the centroid of all structures, or the volume's middle."""
    idx = np.argwhere(labels > 0)
    point = idx.mean(axis=0) if len(idx) else (np.array(labels.shape) - 1) / 2
    s, r, c = (int(np.rint(v)) for v in point)
    return s, r, c


def preview(image: MedImage, labels: np.ndarray, window: str | None = None) -> Preview:
    """The three planes through :func:`centre` with the mask drawn, each scaled to :data:`PANEL` rows."""
    s, r, c = centre(labels)
    indices = {"axial": s, "coronal": r, "sagittal": c}
    panels = []
    for plane in PLANES:
        rgb = draw_overlay(
            render_plane(image, plane, indices[plane], window), cut(labels, plane, indices[plane])
        )
        rgb = square_pixels(rgb, *pixel_mm(image, plane), smooth=False)
        width = max(1, round(rgb.shape[1] * PANEL / rgb.shape[0]))
        panels.append(np.asarray(Image.fromarray(rgb).resize((width, PANEL), Image.Resampling.NEAREST)))
    gap = np.zeros((PANEL, GAP, 3), np.uint8)
    row = [panels[0], gap, panels[1], gap, panels[2]]
    return Preview(np.concatenate(row, axis=1), indices)


def write_preview(image: MedImage, labels: np.ndarray, path: Path, window: str | None = None) -> Preview:
    """Save :func:`preview` as PNG at ``path``."""
    shot = preview(image, labels, window)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot.rgb).save(path, format="PNG")
    return shot
