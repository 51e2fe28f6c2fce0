"""Per-structure statistics of a segmentation, as TotalSegmentator's ``statistics.json`` gives them and more:
voxel count, volume (mL), intensity mean/std/min/max, centroid and bounding box.

Coordinates: ``*_mm`` values are world coordinates in millimetres in the RAS+ convention NIfTI files and
viewers use (+x = patient's Right, +y = Anterior, +z = Superior), the frame of the written ``_seg.nii.gz``'s
affine; ``*_mm_lps`` are DICOM patient coordinates (LPS). ``*_voxel`` values are 0-based
``(slice, row, col)`` indices of the image as medvlab reads it (the viewer's slice numbers minus one).
Intensities are the image's stored values (Hounsfield units for CT, arbitrary units for MR).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medvlab.imaging.types import MedImage
from medvlab.seg.data import LPS_TO_RAS

COLUMNS = ("structure", "voxels", "volume_ml", "mean", "std", "min", "max", "centroid_mm")
"""The columns of the statistics table the faces show (keys of :func:`table_rows`)."""


def _world(affine_lps: np.ndarray, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RAS, LPS) millimetres of ``(n, 3)`` voxel indices under the image's LPS affine."""
    homogeneous = np.c_[ijk, np.ones(len(ijk))]
    lps = (affine_lps @ homogeneous.T).T[:, :3]
    ras = (LPS_TO_RAS @ np.c_[lps, np.ones(len(lps))].T).T[:, :3]
    return ras, lps


def _r(values: Any, digits: int = 2) -> list[float]:
    return [round(float(v), digits) for v in values]


def structure_statistics(
    labels: np.ndarray, image: MedImage, names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Statistics of each structure ``names[i]`` (label value ``i + 1``) over ``image``'s grid.

    A structure with no voxels gets ``voxels: 0``, ``volume_ml: 0.0`` and None for everything else.
    """
    if labels.shape != image.pixels.shape[: labels.ndim] or image.is_rgb:
        raise ValueError(f"labels {labels.shape} do not match the grayscale image {image.pixels.shape}")
    voxel_ml = float(np.prod([abs(float(s)) for s in image.spacing])) / 1000.0
    pixels = image.pixels
    out: dict[str, dict[str, Any]] = {}
    for value, name in enumerate(names, start=1):
        mask = labels == value
        n = int(mask.sum())
        stats: dict[str, Any] = {"label": value, "voxels": n, "volume_ml": round(n * voxel_ml, 3)}
        if n == 0:
            stats.update(
                dict.fromkeys(("intensity", "centroid_mm", "centroid_mm_lps", "centroid_voxel"))
                | {"bbox_voxel": None, "bbox_mm": None}
            )
            out[name] = stats
            continue
        values = pixels[mask].astype(np.float64)
        idx = np.argwhere(mask)
        centroid = idx.mean(axis=0)
        lo, hi = idx.min(axis=0), idx.max(axis=0)
        (c_ras,), (c_lps,) = (a for a in _world(image.affine, centroid[None]))
        corners = np.array(
            [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
        )
        ras, _ = _world(image.affine, corners)
        stats.update(
            {
                "intensity": {
                    "mean": round(float(values.mean()), 3),
                    "std": round(float(values.std()), 3),
                    "min": round(float(values.min()), 3),
                    "max": round(float(values.max()), 3),
                },
                "centroid_mm": _r(c_ras),
                "centroid_mm_lps": _r(c_lps),
                "centroid_voxel": _r(centroid),
                "bbox_voxel": {"min": [int(v) for v in lo], "max": [int(v) for v in hi]},
                "bbox_mm": {"min": _r(ras.min(axis=0)), "max": _r(ras.max(axis=0))},
            }
        )
        out[name] = stats
    return out


def statistics_document(
    labels: np.ndarray, image: MedImage, names: Sequence[str], source: str = ""
) -> dict[str, Any]:
    """The ``statistics.json`` document: the structures' statistics plus what the numbers refer to."""
    return {
        "source": source,
        "shape_voxel": list(labels.shape),
        "spacing_mm": _r(image.spacing, 4),
        "modality": image.modality,
        "coordinates": (
            "*_mm: world mm, RAS+ (as the NIfTI mask's affine); *_mm_lps: DICOM patient mm (LPS); "
            "*_voxel: 0-based (slice, row, col) of the image as medvlab reads it; "
            "bbox corners are voxel centres"
        ),
        "note": "research use only, not a diagnosis",
        "structures": structure_statistics(labels, image, names),
    }


def write_statistics(document: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def table_rows(structures: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """One row per structure in :data:`COLUMNS` order (intensities to 1 decimal, centroid as 'x, y, z')."""
    rows = []
    for name, s in structures.items():
        i = s.get("intensity") or {}
        centroid = ", ".join(f"{v:.1f}" for v in s["centroid_mm"]) if s.get("centroid_mm") else "—"
        rows.append(
            [name, s["voxels"], round(s["volume_ml"], 2)]
            + [round(i[k], 1) if k in i else "—" for k in ("mean", "std", "min", "max")]
            + [centroid]
        )
    return rows
