"""One study in, files out: load a DICOM series / DICOM file / NIfTI, segment it, write NIfTI and SEG."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvlab.imaging.dicom import Progress
from medvlab.imaging.io import load
from medvlab.imaging.types import MedImage
from medvlab.seg.data import SEG_LIMITS, case_name
from medvlab.seg.infer import Predictor, Segmentation
from medvlab.seg.outputs import is_nifti, write_dicom_seg, write_nifti

logger = logging.getLogger(__name__)


@dataclass
class StudyResult:
    segmentation: Segmentation
    image: MedImage
    nifti: Path | None = None
    dicom_seg: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = self.segmentation.summary()
        out["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        out["nifti"] = str(self.nifti) if self.nifti else None
        out["dicom_seg"] = str(self.dicom_seg) if self.dicom_seg else None
        return out


def default_outputs(source: Path, out_dir: Path) -> tuple[Path, Path | None]:
    """``<name>_seg.nii.gz`` always; ``<name>_seg.dcm`` for DICOM input (SEG must reference a series)."""
    name = case_name(source)
    return out_dir / f"{name}_seg.nii.gz", (None if is_nifti(source) else out_dir / f"{name}_seg.dcm")


def segment_study(
    source: Path,
    predictor: Predictor,
    nifti: Path | None = None,
    dicom_seg: Path | None = None,
    model_name: str = "medvlab",
    progress: Progress | None = None,
    inference_progress: Progress | None = None,
) -> StudyResult:
    """Segment the image at ``source`` and write the requested outputs (either may be None).

    ``progress`` follows the reading of DICOM files, ``inference_progress`` the batches of windows.
    """
    t0 = time.perf_counter()
    image = load(source, limits=SEG_LIMITS, progress=progress)
    t1 = time.perf_counter()
    seg = predictor.predict(image, inference_progress)
    timings = {"load": t1 - t0, **seg.timings}
    result = StudyResult(seg, image, timings=timings)
    if nifti is not None:
        t = time.perf_counter()
        result.nifti = write_nifti(seg.labels, image, nifti, source)
        timings["write_nifti"] = time.perf_counter() - t
    if dicom_seg is not None:
        t = time.perf_counter()
        result.dicom_seg = write_dicom_seg(seg.labels, image, source, seg.spec, dicom_seg, model_name)
        timings["write_dicom_seg"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    logger.info("segmented %s in %.2f s: %s", source.name, timings["total"], seg.volumes_ml)
    return result
