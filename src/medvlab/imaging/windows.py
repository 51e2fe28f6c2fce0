"""Display windows: presets, header VOI, automatic ranges, and MedGemma's 3-window CT RGB encoding."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from medvlab.errors import ConfigError, look_up_option
from medvlab.imaging.types import MedImage

logger = logging.getLogger(__name__)

PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
    "soft_tissue": (40.0, 350.0),
    "liver": (60.0, 160.0),
    "subdural": (75.0, 215.0),
}
"""CT window presets as (centre, width) in HU."""

MEDGEMMA_CT_WINDOWS: tuple[tuple[float, float], ...] = ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))
"""(low, high) HU of the R, G and B channels in MedGemma's CT encoding: wide, soft tissue, brain."""

WINDOW_CHOICES = ("auto", "medgemma", *PRESETS)


@dataclass(frozen=True)
class WindowSpec:
    """A parsed window choice. ``range`` carries explicit ``low``/``high`` in modality units."""

    kind: Literal["auto", "medgemma", "range"]
    low: float = 0.0
    high: float = 0.0
    name: str = "auto"


def parse_window(spec: str | WindowSpec | None) -> WindowSpec:
    """``None``/``auto``, ``medgemma``, a preset name, or ``C,W`` (centre,width) -> WindowSpec."""
    if isinstance(spec, WindowSpec):
        return spec
    if spec is None or spec.strip().lower() in ("", "auto"):
        return WindowSpec("auto")
    text = spec.strip().lower()
    if text == "medgemma":
        return WindowSpec("medgemma", name="medgemma")
    if "," in text:
        try:
            center, width = (float(x) for x in text.split(","))
        except ValueError as exc:
            raise ConfigError(
                f"Bad window '{spec}'.", "Write a custom window as CENTRE,WIDTH, e.g. 40,400."
            ) from exc
        if not (math.isfinite(center) and math.isfinite(width)):
            raise ConfigError(f"Window '{spec}' is not finite.", "Write numbers, e.g. 40,400.")
        if width <= 0:
            raise ConfigError(f"Window width must be positive in '{spec}'.", "e.g. 40,400.")
        return WindowSpec("range", center - width / 2, center + width / 2, name=f"{center:g},{width:g}")
    name = look_up_option(text, WINDOW_CHOICES, "window")
    if name in ("auto", "medgemma"):
        return parse_window(name)
    center, width = PRESETS[name]
    return WindowSpec("range", center - width / 2, center + width / 2, name=name)


def _threshold(values: np.ndarray, at: float) -> np.ndarray:
    """255 above ``at``, else 0 (NaN included): what a window of no width shows."""
    with np.errstate(invalid="ignore"):
        return np.where(values > at, np.uint8(255), np.uint8(0))


def window_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map [low, high] -> [0, 255], clipped and rounded; NaN -> 0, +inf -> 255, -inf -> 0.

    Never divides by zero: a window without width (``low + 1 == low`` at 1e38) or with an infinite
    or NaN bound (a header whose scaling overflowed) becomes a threshold instead.
    """
    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _threshold(values, lo if math.isfinite(lo) else hi if math.isfinite(hi) else 0.0)
    if hi <= lo:
        hi = lo + 1.0
    width = hi - lo
    if not (math.isfinite(width) and width > 0):
        return _threshold(values, lo)
    scale = 255.0 / width
    # float32 (half the memory, the historical results) whenever the window fits it, else float64
    dtype = np.dtype(np.float32 if max(abs(lo), abs(hi), scale) < 1e37 and scale > 1e-30 else np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled: np.ndarray = values.astype(dtype)
        scaled -= np.asarray(lo, dtype=dtype)
        scaled *= np.asarray(scale, dtype=dtype)
        out = np.clip(np.rint(scaled), 0, 255)
        if values.dtype.kind not in "iub":
            np.nan_to_num(out, copy=False, nan=0.0)
        return out.astype(np.uint8)


def medgemma_ct_rgb(hu: np.ndarray) -> np.ndarray:
    """HU array (any shape) -> uint8 array with a trailing RGB axis, one window per channel."""
    return np.stack([window_to_uint8(hu, lo, hi) for lo, hi in MEDGEMMA_CT_WINDOWS], axis=-1)


def auto_range(image: MedImage) -> tuple[float, float]:
    """0.5th-99.5th percentile of the whole image, from a strided sample (fast on big volumes).

    NaN and infinite values are left out; a sample without any finite value gives (0, 1).
    """
    px = image.pixels
    step = max(1, int(np.sqrt(px.shape[1] * px.shape[2] / 65536)))
    sample = px[:: max(1, px.shape[0] // 32), ::step, ::step]
    if sample.dtype.kind not in "iub":
        sample = sample[np.isfinite(sample)].astype(np.float64)  # float64: no overflow at 1e38
        if sample.size == 0:
            return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + max(1.0, abs(lo) * 1e-6)
    return lo, hi


def default_window(image: MedImage, for_model: bool = False) -> WindowSpec:
    """The window used when the user chose none.

    CT sent to the model gets MedGemma's 3-window encoding. Otherwise the file's own window
    (header VOI) wins, then an automatic percentile range.
    """
    if image.is_rgb:
        return WindowSpec("auto")
    if for_model and image.modality == "CT":
        return WindowSpec("medgemma", name="medgemma")
    if image.window is not None:
        return WindowSpec("range", image.window.low, image.window.high, name="header")
    return WindowSpec("auto")


def _apply_voi_lut(values: np.ndarray, image: MedImage) -> np.ndarray:
    lut = image.voi_lut
    assert lut is not None
    if values.dtype.kind not in "iub":  # NaN/inf cannot index the table: clamp them to its ends
        values = np.clip(np.nan_to_num(values, nan=lut.first_mapped), -(2**40), 2**40)
    idx = np.clip(values.astype(np.int64) - lut.first_mapped, 0, len(lut.table) - 1)
    return window_to_uint8(lut.table[idx], 0, 2**lut.bits - 1)


def render_slice(image: MedImage, index: int = 0, window: str | WindowSpec | None = None) -> np.ndarray:
    """One slice as ``(rows, cols, 3)`` uint8 RGB, ready to show or to send to a model.

    ``window=None`` uses :func:`default_window` (display flavour); ``auto`` uses header VOI (window or
    LUT) when present, else the percentile range. MONOCHROME1 is inverted so bone is always bright.
    """
    if not -image.n_slices <= index < image.n_slices:
        raise ConfigError(
            f"Slice {index} is out of range; the image has {image.n_slices} slice(s).",
            f"Pick a slice from 0 to {image.n_slices - 1}.",
        )
    values = image.slice(index)
    if image.is_rgb:
        return np.asarray(values, dtype=np.uint8)
    spec = parse_window(window) if window is not None else default_window(image)
    if spec.kind == "medgemma":
        if image.modality != "CT":
            logger.warning("MedGemma's CT windows assume HU; this image is %s", image.modality)
        return medgemma_ct_rgb(values)
    if spec.kind == "range":
        gray = window_to_uint8(values, spec.low, spec.high)
    elif image.window is not None:
        gray = window_to_uint8(values, image.window.low, image.window.high)
    elif image.voi_lut is not None:
        gray = _apply_voi_lut(values, image)
    else:
        gray = window_to_uint8(values, *auto_range(image))
    if image.photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def sample_slices(n_slices: int, max_slices: int) -> list[int]:
    """At most ``max_slices`` indices spread evenly over ``n_slices``, first and last included, in order."""
    if n_slices <= max_slices:
        return list(range(n_slices))
    if max_slices == 1:
        return [n_slices // 2]
    picks = np.linspace(0, n_slices - 1, max_slices)
    return sorted({round(float(x)) for x in picks})


def to_pil(rgb: np.ndarray) -> Image.Image:
    """uint8 ``(rows, cols, 3)`` -> PIL RGB image."""
    return Image.fromarray(np.ascontiguousarray(rgb))
