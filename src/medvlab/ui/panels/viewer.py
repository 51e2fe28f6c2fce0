"""The viewer: upload, description, slice preview, slice slider and display window.

Uploads go through :func:`~medvlab.ui.uploads.checked_paths` and are deleted with
:func:`~medvlab.ui.uploads.forget` once read; the session keeps them in memory as
:class:`~medvlab.ui.uploads.Uploads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr
import numpy as np

from medvlab.errors import MedvlabError
from medvlab.imaging.types import MedImage
from medvlab.imaging.windows import WINDOW_CHOICES
from medvlab.seg.infer import Segmentation
from medvlab.services import Lab
from medvlab.ui.i18n import Texts
from medvlab.ui.state import States, shown_errors
from medvlab.ui.uploads import Uploads, checked_paths, forget

MIN_PREVIEW = 448
"""Small images (64x64 MR) are enlarged for display, by whole pixels so nothing is smoothed away."""


def display(rgb: np.ndarray) -> np.ndarray:
    factor = MIN_PREVIEW // max(rgb.shape[0], rgb.shape[1])
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


def describe(image: MedImage) -> str:
    s = image.summary()
    shape = " × ".join(str(x) for x in s["shape"])
    spacing = ", ".join(f"{v:g}" for v in s["spacing_mm"])
    return f"**{s['format']}** · {s['modality']} · {shape} · spacing {spacing} mm · {s['orientation']}"


def slice_of(image: MedImage, index: float) -> int:
    """The 0-based slice for the slider's 1-based position, clamped to the image."""
    return min(max(int(index) - 1, 0), image.n_slices - 1)


@dataclass(frozen=True)
class Viewer:
    files: gr.File
    info: gr.Markdown
    preview: gr.Image
    slice: gr.Slider
    window: gr.Dropdown


def build(texts: Texts) -> Viewer:
    files = texts.add(gr.File, {"label": "files"}, file_count="multiple", type="filepath", elem_id="files")
    info = gr.Markdown(elem_id="image-info")
    preview = texts.add(
        gr.Image, {"label": "preview"}, type="numpy", interactive=False, elem_id="preview", height=420
    )
    slider = texts.add(
        gr.Slider, {"label": "slice"}, minimum=1, maximum=2, value=1, step=1, visible=False, elem_id="slice"
    )
    window = texts.add(
        gr.Dropdown, {"label": "window"}, choices=list(WINDOW_CHOICES), value="auto", elem_id="window"
    )
    return Viewer(files, info, preview, slider, window)


def load(lab: Lab, files: Any, window: str, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
    """Uploaded files -> (image, uploads, description, preview of the middle slice, slider)."""
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    if not paths:
        return None, None, "", None, gr.update(visible=False, value=1, maximum=1)

    def report(done: int, total: int) -> None:
        progress((done, total), desc="Reading DICOM")

    try:  # the uploads are read into memory and deleted from disk whatever happens
        image = lab.load_image(paths if len(paths) > 1 else paths[0], progress=report)
        uploads = Uploads([(p.name, p.read_bytes()) for p in paths])
        mid = image.n_slices // 2
        rendered = display(lab.preview(image, mid, window))
    except MedvlabError as exc:
        raise gr.Error(str(exc)) from exc
    finally:
        forget(paths)
    slider = gr.update(visible=image.n_slices > 1, minimum=1, maximum=max(image.n_slices, 2), value=mid + 1)
    return image, uploads, describe(image), rendered, slider


def view(
    lab: Lab, image: MedImage | None, index: float, window: str, seg: Segmentation | None = None
) -> np.ndarray | None:
    """The slice at the slider's position, with the segmentation drawn on it when it fits the image."""
    if image is None:
        return None
    i = slice_of(image, index)
    with shown_errors():
        if seg is not None and seg.labels.shape == image.pixels.shape[:3]:
            return display(lab.overlay(image, seg, i, window))
        return display(lab.preview(image, i, window))


def wire(lab: Lab, viewer: Viewer, states: States) -> None:
    viewer.files.change(
        partial(load, lab),
        [viewer.files, viewer.window],
        [states.image, states.uploads, viewer.info, viewer.preview, viewer.slice],
        api_name="load",
    )
    view_inputs = [states.image, viewer.slice, viewer.window, states.seg]
    viewer.slice.change(partial(view, lab), view_inputs, viewer.preview, api_visibility="private")
    viewer.window.change(partial(view, lab), view_inputs, viewer.preview, api_visibility="private")
