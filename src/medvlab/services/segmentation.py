"""Segmentation in the lab: the models (loaded once), one volume at a time, and the outputs a face offers:
NIfTI mask bytes, a DICOM SEG that references the source (and a TID 1500 SR of its volumes), an overlay
picture."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medvlab import scratch
from medvlab.imaging import MedImage, render_slice
from medvlab.imaging.dicom import Progress
from medvlab.services.inputs import Inputs, is_remote

if TYPE_CHECKING:
    from medvlab.seg.infer import Predictor, Segmentation


class Segmenter:
    """The lab's segmentation models by name, and a lock so one volume runs at a time."""

    def __init__(self, default_model: str, device: str | None) -> None:
        self.default_model, self.device = default_model, device
        self._predictors: dict[str, Predictor] = {}
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def predictor(self, model: str | None = None) -> Predictor:
        """The segmentation model (built-in name or checkpoint), loaded once and kept."""
        ref = model or self.default_model
        with self._load_lock:
            if ref not in self._predictors:
                from medvlab.devices import resolve_device
                from medvlab.seg.infer import Predictor

                device = resolve_device(self.device, dtype="float32").torch_device
                self._predictors[ref] = Predictor.load(ref, device)
            return self._predictors[ref]

    def segment(
        self, image: MedImage, model: str | None = None, progress: Progress | None = None
    ) -> Segmentation:
        """Labels on ``image``'s grid and each structure's volume in mL; ``progress`` gets (done, total)."""
        predictor = self.predictor(model)
        with self._run_lock:  # one volume at a time: a 3-D network can use every core / the GPU
            return predictor.predict(image, progress)

    def to_dicom_seg(self, inputs: Inputs, ref: str, model: str | None = None) -> tuple[Segmentation, bytes]:
        """Segment the DICOM named in a request (data URI of a file, or an allowed local file/series
        folder) and return the DICOM SEG that references it."""
        seg, data, _ = self.to_dicom_objects(inputs, ref, model, sr=False)
        return seg, data

    def to_dicom_objects(
        self, inputs: Inputs, ref: str, model: str | None = None, sr: bool = True
    ) -> tuple[Segmentation, bytes, bytes | None]:
        """Segment the DICOM named in a request and return the DICOM SEG that references it and (with
        ``sr``) the TID 1500 measurement SR of the volumes that references the SEG. Uploaded bytes touch
        disk only in a scratch folder that is removed when this returns."""
        from medvlab.seg.outputs import write_dicom_seg, write_measurement_sr

        ref = ref.strip()
        name = Path(model or self.default_model).stem
        with scratch.temp_dir("seg-") as tmp:
            source: Path | list[Path]
            if ref.startswith("data:") or is_remote(ref):
                data, filename = (
                    inputs.decode_data_uri(ref) if ref.startswith("data:") else inputs.fetch_allowed(ref)
                )
                source = tmp / ("source" + "".join(Path(filename).suffixes[-2:]))
                source.write_bytes(data)
            else:
                files = inputs.allowed_files(ref)
                source = files if len(files) > 1 else files[0]
            image = inputs.load(source)
            seg = self.segment(image, model)
            out = write_dicom_seg(seg.labels, image, source, seg.spec, tmp / "seg.dcm", name)
            report = (
                write_measurement_sr(out, image, source, seg.volumes_ml, tmp / "sr.dcm", name).read_bytes()
                if sr
                else None
            )
            return seg, out.read_bytes(), report


def mask_nifti(segmentation: Segmentation, image: MedImage) -> bytes:
    """The segmentation's labels as .nii.gz bytes on ``image``'s grid."""
    from medvlab.seg.outputs import write_nifti

    with scratch.temp_dir("mask-") as tmp:
        return write_nifti(segmentation.labels, image, tmp / "mask.nii.gz").read_bytes()


def overlay(
    image: MedImage, segmentation: Segmentation, index: int = 0, window: str | None = None
) -> np.ndarray:
    """One slice with the segmentation drawn over it, ``(rows, cols, 3)`` uint8."""
    from medvlab.seg.overlay import draw_overlay

    return draw_overlay(render_slice(image, index, window), segmentation.labels[index])


def statistics(image: MedImage, segmentation: Segmentation, source: str = "") -> dict[str, Any]:
    """The ``statistics.json`` document: per structure voxels, mL, intensity, centroid, bounding box."""
    from medvlab.seg.statistics import statistics_document

    return statistics_document(segmentation.labels, image, segmentation.names, source)


def preview_png(image: MedImage, segmentation: Segmentation, path: Path, window: str | None = None) -> str:
    """Write the three-plane preview (axial/coronal/sagittal with the mask) to ``path``; -> its caption."""
    from medvlab.seg.preview import write_preview

    return write_preview(image, segmentation.labels, path, window).caption(image)
