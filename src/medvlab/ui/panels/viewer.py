"""The viewer: upload, a one-line summary, and the picture with its controls — plane, slice (slider, mouse
wheel, arrow keys), window preset and free window/level, zoom, and the mask / attention overlays.

Pictures are rendered on the server (:func:`medvlab.services.viewing.render_view`); the only script is
:data:`HEAD`, a few lines that turn the mouse wheel over the picture and the arrow keys into slider steps
(no CDN, nothing fetched). Uploads go through :func:`~medvlab.ui.uploads.checked_paths` and are deleted
with :func:`~medvlab.ui.uploads.forget` once read; the session keeps them in memory as
:class:`~medvlab.ui.uploads.Uploads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr
import numpy as np

from medvlab.errors import MedvlabError
from medvlab.imaging.planes import PLANES, plane_count, resolved_window
from medvlab.imaging.types import MedImage
from medvlab.imaging.windows import WINDOW_CHOICES
from medvlab.seg.infer import Segmentation
from medvlab.services import Lab
from medvlab.services.viewing import View, render_view
from medvlab.ui.i18n import TEXT, Texts, language_of
from medvlab.ui.state import ChatSession, States, shown_errors
from medvlab.ui.uploads import Uploads, checked_paths, forget

MIN_PREVIEW = 448
"""Small images (64x64 MR) are enlarged for display, by whole pixels so nothing is smoothed away."""

OVERLAYS = ("mask", "attention")

HEAD = r"""<script>
/* medvlab viewer: mouse wheel over the picture and the arrow keys step the slice slider (no library). */
(() => {
  const step = (delta) => {
    const range = document.querySelector('#slice input[type=range]');
    if (!range) return;
    const value = Math.min(+range.max, Math.max(+range.min, +range.value + delta));
    if (value === +range.value) return;
    range.value = String(value);
    range.dispatchEvent(new Event('input', {bubbles: true}));
    range.dispatchEvent(new Event('change', {bubbles: true}));
  };
  document.addEventListener('wheel', (e) => {
    if (!(e.target instanceof Element) || !e.target.closest('#preview')) return;
    e.preventDefault();
    step(e.deltaY > 0 ? 1 : -1);
  }, {passive: false});
  /* Gradio's own words (upload area, buttons) follow the lab's language switch too */
  document.addEventListener('change', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLInputElement) || !t.closest('#lang')) return;
    const locale = t.value === '中文' ? 'zh-CN' : 'en';
    const core = performance.getEntriesByType('resource').map((r) => r.name)
      .find((n) => /\/assets\/core-[^/]*\.js$/.test(n));
    if (core) import(core).then((m) => m.changeLocale && m.changeLocale(locale)).catch(() => {});
  });
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t instanceof Element && (t.closest('textarea, select, [contenteditable]') ||
        (t.tagName === 'INPUT' && t.type !== 'checkbox' && t.type !== 'radio'))) return;
    const delta = {ArrowDown: 1, ArrowRight: 1, PageDown: 10, ArrowUp: -1, ArrowLeft: -1, PageUp: -10}[e.key];
    if (delta === undefined || !document.querySelector('#preview img')) return;
    e.preventDefault();
    step(delta);
  });
})();
</script>
<style>
#files .file-preview-holder, #files table { max-height: 4.5em; overflow-y: auto; }
#heatmaps .caption-label { white-space: normal; max-width: 96%; opacity: 0.85; }
</style>
"""


def display(rgb: np.ndarray) -> np.ndarray:
    factor = MIN_PREVIEW // max(rgb.shape[0], rgb.shape[1])
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


FORMATS = {"nifti": "NIfTI", "png": "PNG", "jpeg": "JPEG", "photo": "PNG/JPEG"}


def describe(image: MedImage, files: int = 1, language: str = "en") -> str:
    """One line: format, modality, files, slices, matrix and spacing."""
    t = TEXT[language]
    s = image.summary()
    fmt = "DICOM" if str(s["format"]).startswith("dicom") else FORMATS.get(str(s["format"]), str(s["format"]))
    shape = " × ".join(str(x) for x in s["shape"][:3])
    spacing = " × ".join(f"{v:g}" for v in s["spacing_mm"])
    parts = [f"**{fmt}**", str(s["modality"]), t["n_files"].format(n=files)]
    if image.n_slices > 1:
        parts.append(t["n_slices"].format(n=image.n_slices))
    parts += [shape, f"{t['spacing']} {spacing} mm"]
    return " · ".join(parts)


def slice_of(image: MedImage, index: float) -> int:
    """The 0-based slice for the slider's 1-based position, clamped to the image."""
    return min(max(int(index) - 1, 0), image.n_slices - 1)


def window_choices(language: str) -> list[tuple[str, str]]:
    return [(TEXT[language][f"win_{name}"], name) for name in WINDOW_CHOICES]


def plane_choices(language: str) -> list[tuple[str, str]]:
    return [(TEXT[language][p], p) for p in PLANES]


def overlay_choices(language: str) -> list[tuple[str, str]]:
    return [(TEXT[language][f"ov_{o}"], o) for o in OVERLAYS]


@dataclass(frozen=True)
class Viewer:
    files: gr.File
    info: gr.Markdown
    preview: gr.Image
    slice: gr.Slider
    window: gr.Dropdown
    plane: gr.Radio
    level: gr.Slider
    width: gr.Slider
    zoom: gr.Slider
    overlays: gr.CheckboxGroup
    count: gr.State
    """How many files the image came from (the summary line says it again in the other language)."""


def build(texts: Texts) -> Viewer:
    lang = texts.language
    files = texts.add(
        gr.File, {"label": "files"}, file_count="multiple", type="filepath", elem_id="files", height=150
    )
    info = gr.Markdown(elem_id="image-info")
    preview = gr.Image(
        label=TEXT[lang]["preview"], type="numpy", interactive=False, elem_id="preview", height=460
    )
    with gr.Row():
        plane = gr.Radio(
            plane_choices(lang), value="axial", label=TEXT[lang]["plane"], elem_id="plane", scale=2
        )
        zoom = texts.add(
            gr.Slider, {"label": "zoom"}, minimum=1, maximum=4, value=1, step=0.25, elem_id="zoom", scale=1
        )
    slider = texts.add(
        gr.Slider,
        {"label": "slice", "info": "slice_hint"},
        minimum=1,
        maximum=2,
        value=1,
        step=1,
        visible=False,
        elem_id="slice",
    )
    with gr.Row():
        window = gr.Dropdown(
            window_choices(lang),
            value="auto",
            label=TEXT[lang]["window"],
            allow_custom_value=True,
            elem_id="window",
            scale=2,
        )
        overlays = gr.CheckboxGroup(
            overlay_choices(lang),
            value=list(OVERLAYS),
            label=TEXT[lang]["overlays"],
            elem_id="overlays",
            scale=2,
        )
    with gr.Row():
        level = texts.add(
            gr.Slider, {"label": "level"}, minimum=-1024, maximum=3071, value=40, elem_id="level"
        )
        width = texts.add(gr.Slider, {"label": "width"}, minimum=1, maximum=4096, value=400, elem_id="width")
    return Viewer(files, info, preview, slider, window, plane, level, width, zoom, overlays, gr.State(1))


def window_sliders(image: MedImage, window: str | None) -> tuple[Any, Any]:
    """Level and width sliders over the image's value range, set to the window in force."""
    values = image.pixels if image.pixels.dtype.kind in "iub" else image.pixels[np.isfinite(image.pixels)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    span = max(hi - lo, 1.0)
    try:
        spec = resolved_window(image, window)
    except MedvlabError:
        spec = resolved_window(image, None)
    if spec.kind == "range":
        level, width = (spec.low + spec.high) / 2, spec.high - spec.low
    else:
        level, width = (lo + hi) / 2, span
    step = 1.0 if span > 50 else span / 200
    return (
        gr.update(
            minimum=lo - span / 2, maximum=hi + span / 2, value=level, step=step, interactive=not image.is_rgb
        ),
        gr.update(
            minimum=step,
            maximum=2 * span,
            value=min(max(width, step), 2 * span),
            step=step,
            interactive=not image.is_rgb,
        ),
    )


def load(
    lab: Lab, files: Any, window: str, lang_label: str = "English", progress: gr.Progress = gr.Progress()
) -> tuple[Any, ...]:
    """Uploaded files -> (image, uploads, summary, picture, slider, plane, level, width, zoom, count)."""
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    language = language_of(lang_label)
    if not paths:
        off = gr.update()
        return None, None, "", None, gr.update(visible=False, value=1, maximum=1), "axial", off, off, 1, 0

    def report(done: int, total: int) -> None:
        progress((done, total), desc="DICOM")

    try:  # the uploads are read into memory and deleted from disk whatever happens
        image = lab.load_image(paths if len(paths) > 1 else paths[0], progress=report)
        uploads = Uploads([(p.name, p.read_bytes()) for p in paths])
        mid = image.n_slices // 2
        picture = render(lab, image, "axial", mid + 1, window, 1, list(OVERLAYS), None, None, lang_label)
    except MedvlabError as exc:
        raise gr.Error(str(exc)) from exc
    finally:
        forget(paths)
    slider = gr.update(visible=image.n_slices > 1, minimum=1, maximum=max(image.n_slices, 2), value=mid + 1)
    level, width = window_sliders(image, window)
    return (
        image,
        uploads,
        describe(image, len(paths), language),
        picture,
        slider,
        gr.update(value="axial", interactive=image.n_slices > 1),
        level,
        width,
        1,
        len(paths),
    )


def render(
    lab: Lab,
    image: MedImage | None,
    plane: str,
    number: float,
    window: str,
    zoom: float,
    overlays: list[str] | None,
    seg: Segmentation | None,
    session: ChatSession | None,
    lang_label: str,
) -> Any:
    """The picture for the controls' values, labelled "Axial · slice 91/181" (the number the PDF uses)."""
    if image is None:
        return gr.update(value=None)
    t = TEXT[language_of(lang_label)]
    shown = set(overlays or ())
    attention = session.attention if session is not None else {}
    with shown_errors():
        view = View(
            plane=plane or "axial",
            index=int(number or 1) - 1,
            window=None if window in (None, "", "auto") else window,
            zoom=min(max(float(zoom or 1), 1.0), 8.0),
            mask="mask" in shown,
            attention="attention" in shown,
        )
        out = render_view(image, view, seg.labels if seg is not None else None, attention)
    label = t[out.plane] if image.n_slices > 1 else t["preview"]
    if out.total > 1:
        label += " · " + t["slice_of"].format(n=out.index + 1, total=out.total)
    if out.mask_drawn:
        label += " · " + t["ov_mask"]
    if out.attention_drawn:
        label += " · " + t["ov_attention"]
    elif view.attention and attention and out.plane == "axial" and image.n_slices > 1:
        near = min(attention, key=lambda k: abs(k - out.index)) + 1
        label += " · " + t["attention_elsewhere"].format(n=near)
    return gr.update(value=display(out.rgb), label=label)


def view(
    lab: Lab, image: MedImage | None, index: float, window: str, seg: Segmentation | None = None
) -> np.ndarray | None:
    """The axial slice at the slider's position, with the segmentation drawn on it when it fits the image."""
    if image is None:
        return None
    with shown_errors():
        spec = None if window in (None, "", "auto") else window
        labels = seg.labels if seg is not None else None
        return display(render_view(image, View(index=slice_of(image, index), window=spec), labels).rgb)


def change_plane(image: MedImage | None, plane: str) -> Any:
    """A new plane starts at its middle slice."""
    if image is None or image.n_slices < 2:
        return gr.update()
    n = plane_count(image, plane)
    return gr.update(minimum=1, maximum=max(n, 2), value=n // 2 + 1)


def set_window(level: float, width: float) -> str:
    """Free window/level -> the window as ``C,W`` (also what the model is sent)."""
    return f"{float(level):.6g},{max(float(width), 1e-6):.6g}"


def relabel(image: MedImage | None, count: int, plane: str, window: str, lang_label: str) -> tuple[Any, ...]:
    """The viewer's texts in the new language: summary line, choices of plane, window and overlays."""
    language = language_of(lang_label)
    t = TEXT[language]
    return (
        describe(image, count, language) if image is not None else "",
        gr.update(choices=plane_choices(language), label=t["plane"], value=plane),
        gr.update(choices=window_choices(language), label=t["window"], value=window),
        gr.update(choices=overlay_choices(language), label=t["overlays"]),
    )


def render_inputs(viewer: Viewer, states: States, lang: gr.Radio) -> list[Any]:
    """What :func:`render` reads, in its order (the viewer's controls and the chat redraw with it)."""
    return [
        states.image,
        viewer.plane,
        viewer.slice,
        viewer.window,
        viewer.zoom,
        viewer.overlays,
        states.seg,
        states.session,
        lang,
    ]


def wire(lab: Lab, viewer: Viewer, states: States, lang: gr.Radio) -> None:
    viewer.files.change(
        partial(load, lab),
        [viewer.files, viewer.window, lang],
        [
            states.image,
            states.uploads,
            viewer.info,
            viewer.preview,
            viewer.slice,
            viewer.plane,
            viewer.level,
            viewer.width,
            viewer.zoom,
            viewer.count,
        ],
        api_name="load",
    )
    draw = partial(render, lab)
    view_inputs = render_inputs(viewer, states, lang)
    for control in (viewer.slice, viewer.zoom, viewer.overlays, viewer.window):
        control.change(
            draw, view_inputs, viewer.preview, api_visibility="private", trigger_mode="always_last"
        )
    viewer.plane.change(
        change_plane, [states.image, viewer.plane], viewer.slice, api_visibility="private"
    ).then(draw, view_inputs, viewer.preview, api_visibility="private")
    viewer.window.change(
        window_sliders_of,
        [states.image, viewer.window],
        [viewer.level, viewer.width],
        api_visibility="private",
    )
    for control in (viewer.level, viewer.width):
        control.input(set_window, [viewer.level, viewer.width], viewer.window, api_visibility="private")
    lang.change(
        relabel,
        [states.image, viewer.count, viewer.plane, viewer.window, lang],
        [viewer.info, viewer.plane, viewer.window, viewer.overlays],
        api_visibility="private",
    ).then(draw, view_inputs, viewer.preview, api_visibility="private")


def window_sliders_of(image: MedImage | None, window: str) -> tuple[Any, Any]:
    if image is None:
        return gr.update(), gr.update()
    return window_sliders(image, window)
