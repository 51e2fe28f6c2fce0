"""DICOM geometry: functional-group items, pixel spacing, slice thickness, orientation, position, affine."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset


def group_item(ds: Dataset, sequence: str, frame: int | None = None) -> Dataset | None:
    """Item of a functional-group macro (``sequence``) for ``frame``, per-frame first, then shared."""
    if frame is not None:
        per = ds.get("PerFrameFunctionalGroupsSequence")
        if per and frame < len(per) and sequence in per[frame]:
            return per[frame][sequence][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0]:
        return shared[0][sequence][0]
    return None


def spacing_2d(ds: Dataset, frame: int = 0) -> tuple[float, float]:
    measures = group_item(ds, "PixelMeasuresSequence", frame)
    for src in (ds, measures):
        if src is None:
            continue
        for tag in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
            value = src.get(tag)
            if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
                return float(value[0]), float(value[1])
    return 1.0, 1.0


def slice_thickness(ds: Dataset) -> float:
    measures = group_item(ds, "PixelMeasuresSequence", 0)
    for src in (ds, measures):
        if src is None:
            continue
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = src.get(tag)
            if value not in (None, "") and float(value) > 0:
                return float(value)
    return 1.0


def orientation(ds: Dataset, frame: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    iop = ds.get("ImageOrientationPatient")
    if iop is None:
        item = group_item(ds, "PlaneOrientationSequence", frame)
        iop = item.get("ImageOrientationPatient") if item is not None else None
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray([float(x) for x in iop])
    return v[:3], v[3:]


def position(ds: Dataset, frame: int = 0) -> np.ndarray | None:
    ipp = ds.get("ImagePositionPatient")
    if ipp is None:
        item = group_item(ds, "PlanePositionSequence", frame)
        ipp = item.get("ImagePositionPatient") if item is not None else None
    if ipp is None or len(ipp) != 3:
        return None
    return np.asarray([float(x) for x in ipp])


def build_affine(
    origin: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Affine from DICOM geometry for array order ``(slice, row, col)``.

    ``row_dir`` is ImageOrientationPatient[0:3] (direction of increasing column index) and ``col_dir``
    ImageOrientationPatient[3:6] (increasing row index), as in DICOM PS3.3 C.7.6.2.1.1.
    """
    normal = np.cross(row_dir, col_dir)
    affine = np.eye(4)
    affine[:3, 0] = normal * spacing[0]
    affine[:3, 1] = col_dir * spacing[1]
    affine[:3, 2] = row_dir * spacing[2]
    affine[:3, 3] = origin
    return affine
