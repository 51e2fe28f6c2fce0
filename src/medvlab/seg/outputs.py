"""Writing a segmentation out: NIfTI on the input's own grid, DICOM SEG referencing the source series."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medvlab.imaging.segmentation_objects import write_seg
from medvlab.imaging.types import MedImage
from medvlab.seg.data import LPS_TO_RAS
from medvlab.seg.model import SegSpec

logger = logging.getLogger(__name__)


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".nii", ".nii.gz"))


def write_nifti(labels: np.ndarray, image: MedImage, path: Path, source: Path | None = None) -> Path:
    """Save labels (slice, row, col) as NIfTI.

    When the input was a NIfTI file the mask gets its exact voxel order, affine and q/s-form codes, so
    it overlays voxel for voxel in any viewer; otherwise the image's geometry is converted to RAS.
    """
    data = labels.transpose(2, 1, 0).astype(np.uint8)
    affine = LPS_TO_RAS @ image.affine[:, [2, 1, 0, 3]]
    out: Any
    if source is not None and is_nifti(source):
        original: Any = nib.load(str(source))
        t = nib.orientations.ornt_transform(
            nib.orientations.io_orientation(affine), nib.orientations.io_orientation(original.affine)
        )
        data = nib.orientations.apply_orientation(data, t)
        out = nib.Nifti1Image(np.ascontiguousarray(data), original.affine)
        qform, qcode = original.get_qform(coded=True)
        sform, scode = original.get_sform(coded=True)
        out.set_qform(qform if qform is not None else original.affine, code=int(qcode or 1))
        out.set_sform(sform if sform is not None else original.affine, code=int(scode or 1))
    else:
        out = nib.Nifti1Image(np.ascontiguousarray(data), affine)
        out.set_qform(affine, code=1)
        out.set_sform(affine, code=1)
    out.header["descrip"] = b"medvlab segmentation, research use only"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(path))
    return path


def write_dicom_seg(
    labels: np.ndarray,
    image: MedImage,
    source: Path | Sequence[Path],
    spec: SegSpec,
    path: Path,
    model_name: str = "medvlab",
) -> Path:
    """A DICOM Segmentation (binary, one segment per structure of ``spec``) referencing the source series;
    written by :func:`medvlab.imaging.segmentation_objects.write_seg`."""
    return write_seg(
        labels, image, source, spec.labels, path, model_name, f"medvlab {model_name} ({spec.net})"
    )


def write_measurement_sr(
    seg_path: Path,
    image: MedImage,
    source: Path | Sequence[Path],
    volumes_ml: dict[str, float],
    path: Path,
    model_name: str = "medvlab",
) -> Path:
    """A TID 1500 measurement report (DICOM Comprehensive 3D SR) of each structure's volume, referencing
    the segments of the SEG at ``seg_path`` and the source series; written by
    :func:`medvlab.imaging.structured_reports.measurement_report`."""
    import pydicom

    from medvlab.imaging.segmentation_objects import source_datasets
    from medvlab.imaging.structured_reports import measurement_report

    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    sr = measurement_report(source_datasets(source, image), seg, volumes_ml, model=model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path, enforce_file_format=True)
    return path
