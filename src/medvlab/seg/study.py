"""One study in, files out: load a DICOM series / DICOM file / NIfTI, segment it, write NIfTI and SEG, the
per-structure statistics (JSON) and a three-plane preview (PNG)."""

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
from medvlab.seg.outputs import is_nifti, write_dicom_seg, write_measurement_sr, write_nifti
from medvlab.seg.preview import write_preview
from medvlab.seg.statistics import statistics_document, write_statistics

logger = logging.getLogger(__name__)


@dataclass
class StudyResult:
    segmentation: Segmentation
    image: MedImage
    nifti: Path | None = None
    dicom_seg: Path | None = None
    dicom_sr: Path | None = None
    statistics: dict[str, Any] | None = None
    """The ``statistics.json`` document (:func:`medvlab.seg.statistics.statistics_document`)."""
    statistics_path: Path | None = None
    preview: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = self.segmentation.summary()
        out["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        out["nifti"] = str(self.nifti) if self.nifti else None
        out["dicom_seg"] = str(self.dicom_seg) if self.dicom_seg else None
        out["dicom_sr"] = str(self.dicom_sr) if self.dicom_sr else None
        out["statistics"] = str(self.statistics_path) if self.statistics_path else None
        out["preview"] = str(self.preview) if self.preview else None
        return out


def default_outputs(source: Path, out_dir: Path) -> tuple[Path, Path | None]:
    """``<name>_seg.nii.gz`` always; ``<name>_seg.dcm`` for DICOM input (SEG must reference a series)."""
    name = case_name(source)
    return out_dir / f"{name}_seg.nii.gz", (None if is_nifti(source) else out_dir / f"{name}_seg.dcm")


def sr_path(seg_path: Path | None) -> Path | None:
    """Where the measurement SR goes beside a DICOM SEG: ``<name>_seg.dcm`` -> ``<name>_seg_sr.dcm``."""
    return None if seg_path is None else seg_path.with_name(seg_path.name.removesuffix(".dcm") + "_sr.dcm")


def default_extras(source: Path, out_dir: Path) -> tuple[Path, Path]:
    """``<name>_statistics.json`` and ``<name>_preview.png`` next to the masks."""
    name = case_name(source)
    return out_dir / f"{name}_statistics.json", out_dir / f"{name}_preview.png"


def segment_study(
    source: Path,
    predictor: Predictor,
    nifti: Path | None = None,
    dicom_seg: Path | None = None,
    model_name: str = "medvlab",
    progress: Progress | None = None,
    inference_progress: Progress | None = None,
    dicom_sr: Path | None = None,
    statistics: Path | None = None,
    preview: Path | None = None,
) -> StudyResult:
    """Segment the image at ``source`` and write the requested outputs (any may be None).

    ``dicom_sr`` (with ``dicom_seg``) is a TID 1500 measurement report of the volumes referencing the SEG.

    ``progress`` follows the reading of DICOM files, ``inference_progress`` the batches of windows.
    The statistics are always computed (``result.statistics``); ``statistics`` / ``preview`` name files
    to write them and the three-plane picture to.
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
        if dicom_sr is not None:
            result.dicom_sr = write_measurement_sr(
                dicom_seg, image, source, seg.volumes_ml, dicom_sr, model_name
            )
    t = time.perf_counter()
    result.statistics = statistics_document(seg.labels, image, seg.names, source.name)
    if statistics is not None:
        result.statistics_path = write_statistics(result.statistics, statistics)
    if preview is not None:
        result.preview = preview
        write_preview(image, seg.labels, preview)
    timings["statistics"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    logger.info("segmented %s in %.2f s: %s", source.name, timings["total"], seg.volumes_ml)
    return result
