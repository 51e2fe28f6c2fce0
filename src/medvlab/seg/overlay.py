"""Draw a label slice over a rendered image slice: translucent fill plus a solid outline per structure."""

from __future__ import annotations

import numpy as np

COLORS = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)],
    dtype=np.float32,
)


def draw_overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """``rgb`` (rows, cols, 3) uint8 with ``labels`` (rows, cols) drawn on it; returns a new array."""
    from scipy import ndimage

    out = rgb.astype(np.float32)
    for value in np.unique(labels):
        if value == 0:
            continue
        color = COLORS[(int(value) - 1) % len(COLORS)]
        mask = labels == value
        out[mask] = (1 - alpha) * out[mask] + alpha * color
        edge = mask & ~ndimage.binary_erosion(mask)
        out[edge] = color
    return out.clip(0, 255).astype(np.uint8)
