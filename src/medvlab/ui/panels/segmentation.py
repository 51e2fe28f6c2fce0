"""Segmentation: the segment button, measured volumes, per-structure statistics (voxels, mL, intensity,
centroid), a three-plane preview picture, the switch citing volumes in answers, mask and statistics files."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from medvlab import scratch
from medvlab.errors import MedvlabError
from medvlab.imaging.types import MedImage
from medvlab.seg.infer import Segmentation
from medvlab.seg.statistics import table_rows, write_statistics
from medvlab.services import Lab
from medvlab.services import segmentation as segmentation_service
from medvlab.ui.i18n import Texts, texts_of
from medvlab.ui.panels.viewer import Viewer, view
from medvlab.ui.state import States, shown_errors
from medvlab.ui.uploads import Uploads

STAT_HEADERS = [
    "structure", "stat_voxels", "volume_ml", "stat_mean", "stat_std", "stat_min", "stat_max", "stat_centroid"
]  # fmt: skip
"""Column keys of the statistics table (the order of :func:`medvlab.seg.statistics.table_rows`)."""


@dataclass(frozen=True)
class SegmentationPanel:
    segment: gr.Button
    volumes: gr.Dataframe
    volumes_on: gr.Checkbox
    files: gr.File
    stats: gr.Dataframe
    picture: gr.Image


def build(texts: Texts) -> SegmentationPanel:
    segment = texts.add(gr.Button, {"value": "segment"}, elem_id="segment")
    volumes = texts.add(
        gr.Dataframe,
        {"label": "volumes", "headers": ["structure", "volume_ml"]},
        interactive=False,
        elem_id="volumes",
    )
    volumes_on = texts.add(gr.Checkbox, {"label": "use_volumes"}, value=False, elem_id="use-volumes")
    files = texts.add(gr.File, {"label": "seg_files"}, file_count="multiple", elem_id="seg-files")
    stats = texts.add(
        gr.Dataframe, {"label": "seg_stats", "headers": STAT_HEADERS}, interactive=False, elem_id="seg-stats"
    )
    picture = texts.add(
        gr.Image, {"label": "seg_preview"}, interactive=False, type="filepath", elem_id="seg-preview"
    )
    return SegmentationPanel(segment, volumes, volumes_on, files, stats, picture)


def segment(
    lab: Lab,
    image: MedImage | None,
    index: float,
    window: str,
    lang_label: str,
    uploads: Uploads | None = None,
    progress: gr.Progress = gr.Progress(),
) -> tuple[Any, ...]:
    """-> (segmentation, slice with mask, volume rows, slider, files, statistics rows, 3-plane picture)."""
    t = texts_of(lang_label)
    if image is None or image.is_rgb or image.n_slices < 2:
        raise gr.Error(t["need_volume"])
    progress(0.0, desc=t["segment"])

    def report(done: int, total: int) -> None:
        progress((done, total), desc=t["segment"])

    with shown_errors():
        seg = lab.segment(image, progress=report)
    rows = [[name, f"{ml:.1f}"] for name, ml in seg.volumes_ml.items()]
    # jump to the slice where the structures are largest, so the overlay is seen at once
    areas = (seg.labels > 0).sum(axis=(1, 2))
    best = int(areas.argmax()) + 1 if areas.any() else int(index)
    folder = scratch.keep_dir("ui-seg-")
    with shown_errors():
        document = segmentation_service.statistics(image, seg)
        picture = folder / "preview.png"
        segmentation_service.preview_png(image, seg, picture, window)
    stats_file = write_statistics(document, folder / "statistics.json")
    return (
        seg,
        view(lab, image, best, window, seg),
        rows,
        gr.update(value=best),
        [*mask_files(image, seg, uploads), str(stats_file), str(picture)],
        table_rows(document["structures"]),
        str(picture),
    )


def mask_files(image: MedImage, seg: Segmentation, uploads: Uploads | None) -> list[str]:
    """The mask as NIfTI, and as a DICOM SEG referencing the uploaded series when it was DICOM.

    The sources are written (under neutral names) only for the time it takes to build the SEG; the
    downloads are deleted after ``MEDVLAB_UI_FILE_TTL_S``."""
    from medvlab.seg.outputs import write_dicom_seg, write_nifti

    folder = scratch.keep_dir("ui-seg-")
    out = [str(write_nifti(seg.labels, image, folder / "mask.nii.gz"))]
    if image.source_format.startswith("dicom") and uploads is not None and uploads.files:
        try:
            with scratch.temp_dir("seg-src-") as tmp:
                sources = uploads.write(tmp)
                out.append(str(write_dicom_seg(seg.labels, image, sources, seg.spec, folder / "seg.dcm")))
        except MedvlabError as exc:  # e.g. no frame of reference: the NIfTI is still offered
            gr.Warning(str(exc))
    return out


def reset() -> tuple[Any, ...]:
    """A new image: no segmentation, no volumes, no mask files, no statistics or preview."""
    return None, [], None, [], None


def wire(lab: Lab, panel: SegmentationPanel, viewer: Viewer, lang: gr.Radio, states: States) -> None:
    viewer.files.change(
        reset,
        None,
        [states.seg, panel.volumes, panel.files, panel.stats, panel.picture],
        api_visibility="private",
    )
    panel.segment.click(
        partial(segment, lab),
        [states.image, viewer.slice, viewer.window, lang, states.uploads],
        [states.seg, viewer.preview, panel.volumes, viewer.slice, panel.files, panel.stats, panel.picture],
        api_visibility="private",
    )
