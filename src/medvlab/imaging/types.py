"""The one image type every reader returns.

Reader contract (after nnU-Net's ``BaseReaderWriter`` and MONAI's ``ImageReader``):

* ``pixels`` always has a leading slice/frame axis: ``(slices, rows, cols)`` for grayscale or
  ``(slices, rows, cols, 3)`` for RGB. A 2-D photo or radiograph has one slice.
* Grayscale values are in *modality units*: Hounsfield units for CT (rescale slope/intercept or the
  modality LUT applied), raw stored values otherwise. RGB is ``uint8``.
* ``spacing`` is ``(slice, row, col)`` in millimetres, the same order as the array axes.
* ``affine`` maps array indices ``(slice, row, col, 1)`` to patient coordinates in millimetres in
  DICOM's LPS convention (NIfTI's RAS is converted on load). Unknown geometry gives a diagonal affine.
* ``photometric`` is ``MONOCHROME1`` (low values are bright, inverted for display), ``MONOCHROME2`` or
  ``RGB`` (YBR and palette colour are converted to RGB on load).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class SourceStudy(Mapping[str, str]):
    """The source's patient and study attributes as the source had them — identified data, so the repr
    withholds the values (image metadata is shown and may be logged); only the DICOM writers read them."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SourceStudy(<{len(self._values)} attributes withheld>)"


@dataclass(frozen=True)
class VoiWindow:
    """A display window from the file header (DICOM Window Center/Width)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2


@dataclass(frozen=True, eq=False)
class VoiLut:
    """A DICOM VOI LUT: values below ``first_mapped`` map to ``table[0]``, above the end to ``table[-1]``."""

    first_mapped: int
    table: np.ndarray
    bits: int


@dataclass(eq=False)
class MedImage:
    """Pixels plus the geometry and metadata needed to display them and to describe them to a model."""

    pixels: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    modality: str = "OT"
    photometric: str = "MONOCHROME2"
    source_format: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)
    window: VoiWindow | None = None
    voi_lut: VoiLut | None = None

    def __post_init__(self) -> None:
        want = 4 if self.photometric == "RGB" else 3
        if self.pixels.ndim != want:
            raise ValueError(
                f"MedImage({self.photometric}) pixels must have {want} dims, got shape {self.pixels.shape}"
            )

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_rgb(self) -> bool:
        return self.photometric == "RGB"

    @property
    def is_volume(self) -> bool:
        """True for a 3-D volume (CT/MR series, NIfTI, multi-frame) with more than one slice."""
        return self.n_slices > 1

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def cols(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def orientation(self) -> str:
        """Anatomical direction (LPS letters) each array axis points to, e.g. ``SPL`` for axial CT."""
        from nibabel.orientations import aff2axcodes

        # Our affine is LPS: the positive end of x is Left, of y Posterior, of z Superior.
        codes = aff2axcodes(self.affine, labels=(("R", "L"), ("A", "P"), ("I", "S")))
        return "".join(c if c is not None else "?" for c in codes)

    def slice(self, index: int) -> np.ndarray:
        """One slice ``(rows, cols)`` or ``(rows, cols, 3)``; negative indices count from the end."""
        return self.pixels[index]

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (shape, spacing, modality, ...) for CLI/API/UI."""
        return {
            "format": self.source_format,
            "modality": self.modality,
            "photometric": self.photometric,
            "shape": list(self.pixels.shape),
            "dtype": str(self.pixels.dtype),
            "spacing_mm": [round(float(s), 4) for s in self.spacing],
            "orientation": self.orientation,
            "window": None if self.window is None else [self.window.center, self.window.width],
            **{k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float))},
        }
