"""Medical image I/O and display: one ``load()`` for DICOM/NIfTI/PNG/JPG, windows, MedGemma CT encoding.

This package imports no model code and nothing from the layers above it.
"""

from medvlab.imaging.io import load, load_bytes
from medvlab.imaging.types import MedImage, VoiLut, VoiWindow
from medvlab.imaging.windows import (
    MEDGEMMA_CT_WINDOWS,
    PRESETS,
    WindowSpec,
    medgemma_ct_rgb,
    parse_window,
    render_slice,
    sample_slices,
)

__all__ = [
    "MEDGEMMA_CT_WINDOWS",
    "PRESETS",
    "MedImage",
    "VoiLut",
    "VoiWindow",
    "WindowSpec",
    "load",
    "load_bytes",
    "medgemma_ct_rgb",
    "parse_window",
    "render_slice",
    "sample_slices",
]
