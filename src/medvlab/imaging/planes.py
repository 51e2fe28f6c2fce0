"""Planes of a volume: axial slices as stored, coronal and sagittal ones cut across them, each windowed like
an axial slice and drawn with square pixels.

A volume's pixels are ``(slice, row, col)`` with slices in anatomical order (for axial series: inferior to
superior). A coronal plane is ``pixels[:, r, :]`` and a sagittal one ``pixels[:, :, c]``; both are flipped
so the highest slice is at the top of the picture (superior up, as radiologists look at them).

Windowing must not change with the plane: ``auto`` on a coronal cut uses the whole volume's automatic range
(or the header's window), not a range computed from that one plane.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from PIL import Image

from medvlab.errors import ConfigError, look_up_option
from medvlab.imaging.types import MedImage
from medvlab.imaging.windows import WindowSpec, auto_range, default_window, parse_window, render_slice

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")


def check_plane(plane: str) -> Plane:
    name = look_up_option(plane.strip().lower(), PLANES, "plane")
    return name  # type: ignore[return-value]


def plane_count(image: MedImage, plane: str) -> int:
    """How many planes of this orientation the image has (one axial plane for a 2-D picture)."""
    p = check_plane(plane)
    if p == "axial" or image.n_slices < 2:
        return image.n_slices
    return image.rows if p == "coronal" else image.cols


def cut(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Plane ``index`` (0-based) of a ``(slice, row, col[, ...])`` array, superior up for cross planes."""
    p = check_plane(plane)
    n = array.shape[0] if p == "axial" else array.shape[1] if p == "coronal" else array.shape[2]
    if not 0 <= index < n:
        raise ConfigError(
            f"{p.capitalize()} plane {index + 1} is out of range; the image has {n}.",
            f"Pick a plane from 1 to {n}.",
        )
    if p == "axial":
        return array[index]
    return array[::-1, index] if p == "coronal" else array[::-1, :, index]


def pixel_mm(image: MedImage, plane: str) -> tuple[float, float]:
    """(row height, column width) in mm of the pixels of a plane."""
    s_slice, s_row, s_col = (float(v) if v and np.isfinite(v) and v > 0 else 1.0 for v in image.spacing)
    p = check_plane(plane)
    if p == "axial" or image.n_slices < 2:
        return s_row, s_col
    return (s_slice, s_col) if p == "coronal" else (s_slice, s_row)


def resolved_window(image: MedImage, window: str | WindowSpec | None) -> WindowSpec:
    """The window as explicit numbers where ``auto`` would otherwise depend on the pixels shown."""
    spec = parse_window(window) if window is not None else default_window(image)
    if spec.kind != "auto" or image.is_rgb:
        return spec
    if image.window is not None:
        return WindowSpec("range", image.window.low, image.window.high, name="header")
    if image.voi_lut is not None:
        return spec  # the LUT maps any stored value the same way, whichever plane it is in
    low, high = auto_range(image)
    return WindowSpec("range", low, high, name="auto")


def render_plane(
    image: MedImage, plane: str, index: int, window: str | WindowSpec | None = None
) -> np.ndarray:
    """Plane ``index`` as ``(rows, cols, 3)`` uint8, windowed as the axial slices are (not yet squared)."""
    if check_plane(plane) == "axial" or image.n_slices < 2:
        return render_slice(image, index, window)
    spec = resolved_window(image, window)
    flat = replace(image, pixels=np.ascontiguousarray(cut(image.pixels, plane, index))[np.newaxis])
    return render_slice(flat, 0, spec)


def square_pixels(rgb: np.ndarray, row_mm: float, col_mm: float, smooth: bool = True) -> np.ndarray:
    """Stretch rows so a pixel is as tall as it is wide (a 1 x 1 x 3 mm volume's coronal cut is 3x taller)."""
    ratio = row_mm / col_mm
    if abs(ratio - 1) < 0.02:
        return rgb
    height = max(1, round(rgb.shape[0] * ratio))
    method = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((rgb.shape[1], height), method))


def zoom_centre(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The centre ``1/factor`` of the picture, enlarged back to its size (``factor`` >= 1)."""
    if factor <= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    ch, cw = max(1, round(h / factor)), max(1, round(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = np.ascontiguousarray(rgb[top : top + ch, left : left + cw])
    return np.asarray(Image.fromarray(crop).resize((w, h), Image.Resampling.NEAREST))
