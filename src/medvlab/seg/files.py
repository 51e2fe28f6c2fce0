"""Segmentation inputs on disk: finding volumes and labels (paths, folders, globs), pairing them, and
reading them (NIfTI, DICOM series, DICOM SEG put on the grid of the series it was drawn on).

Nothing here depends on how volumes are then prepared for a network (that is :mod:`medvlab.seg.data`).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from medvlab.config import LoadLimits
from medvlab.errors import ConfigError, ImageLoadError
from medvlab.imaging.io import load
from medvlab.imaging.segmentation_objects import is_dicom_seg, read_seg
from medvlab.imaging.types import MedImage

SEG_LIMITS = LoadLimits()
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".mha", ".nrrd")


def case_name(path: Path) -> str:
    """A file's name without its image suffix (``.nii.gz``, ``.nii``, ``.dcm``): the case it holds."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def expand(patterns: Sequence[str | Path], what: str) -> list[Path]:
    """Files from paths, folders and glob patterns, sorted.

    A folder gives its NIfTI files, or its DICOM SEG files (one case each), or else is one DICOM series.
    """
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file())
            nifti = [q for q in files if q.name.lower().endswith((".nii", ".nii.gz"))]
            segs = (
                [q for q in files if is_dicom_seg(q)]
                if not nifti and files and is_dicom_seg(files[0])
                else []
            )
            out.extend(nifti or segs or [p])
        elif p.exists():
            out.append(p)
        else:
            hits = sorted(Path(h) for h in glob.glob(str(p)))
            if not hits:
                raise ImageLoadError(f"No {what} match '{pattern}'.", "Check the path or glob pattern.")
            out.extend(hits)
    return out


def pair(images: Sequence[str | Path], labels: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Image/label pairs in sorted order; the counts must agree."""
    imgs, labs = expand(images, "images"), expand(labels, "labels")
    if len(imgs) != len(labs):
        raise ConfigError(
            f"{len(imgs)} image(s) but {len(labs)} label(s).",
            "Give one label per image; they are paired in sorted file-name order.",
        )
    if not imgs:
        raise ConfigError("No training images were given.", "Pass --images and --labels.")
    return list(zip(imgs, labs, strict=True))


def load_volume(path: Path) -> MedImage:
    return load(path, limits=SEG_LIMITS)


def load_label(path: Path, reference: MedImage | None = None) -> MedImage:
    """A label volume from NIfTI/DICOM, or from a DICOM SEG put on the grid of the image it references.

    A SEG stores frames per source instance (empty ones often omitted), so it becomes a label array only
    against ``reference``, the DICOM image it was drawn on: segment numbers become label values.
    """
    if not is_dicom_seg(path):
        return load_volume(path)
    return read_seg(path, reference, SEG_LIMITS)
