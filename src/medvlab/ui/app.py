"""The web UI (Gradio Blocks): upload, slice viewer with windows, streaming chat, Chinese/English labels.

Every action calls :class:`medvlab.services.Lab`; this module only lays out widgets and wires events.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np

from medvlab.config import TINY_MODEL
from medvlab.errors import MedvlabError
from medvlab.imaging.types import MedImage
from medvlab.imaging.windows import WINDOW_CHOICES
from medvlab.services import Lab
from medvlab.vlm.prompting import DISCLAIMERS, Turn

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "## medvlab — medical vision lab",
        "files": "Image: PNG/JPG, DICOM (one file or all files of a series), NIfTI",
        "preview": "Slice",
        "slice": "Slice",
        "window": "Window",
        "chat": "Answer",
        "question": "Question",
        "placeholder": "e.g. Describe the findings in this chest X-ray.",
        "send": "Ask",
        "clear": "Clear",
        "advanced": "Options",
        "max_slices": "Slices sent to the model (volumes)",
        "max_new_tokens": "Max new tokens",
        "no_image": "Load an image first.",
        "language": "Language / 语言",
        "model": "Model",
        "tiny": "random weights: the answers test the plumbing and mean nothing",
        "no_model": "not loaded",
    },
    "zh": {
        "title": "## medvlab — 医学影像视觉实验室",
        "files": "图像：PNG/JPG、DICOM（单个文件或整个序列的所有文件）、NIfTI",
        "preview": "切面",
        "slice": "切面",
        "window": "窗宽窗位",
        "chat": "回答",
        "question": "问题",
        "placeholder": "例如：请描述这张胸片的表现。",
        "send": "提问",
        "clear": "清空",
        "advanced": "选项",
        "max_slices": "送入模型的切面数（容积）",
        "max_new_tokens": "最多生成的词元数",
        "no_image": "请先加载图像。",
        "language": "Language / 语言",
        "model": "模型",
        "tiny": "随机权重：仅用于测试流程，回答没有意义",
        "no_model": "未加载",
    },
}
LANGS = {"English": "en", "中文": "zh"}

# System fonts only: the default theme would make the browser fetch Google Fonts.
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)


def _paths(files: Any) -> list[str]:
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    # Event handlers get path strings; gr.api endpoints get FileData dicts ({"path": ...}).
    return [
        f if isinstance(f, str) else f["path"] if isinstance(f, dict) else getattr(f, "path", str(f))
        for f in items
    ]


def _describe(image: MedImage) -> str:
    s = image.summary()
    shape = " × ".join(str(x) for x in s["shape"])
    spacing = ", ".join(f"{v:g}" for v in s["spacing_mm"])
    return f"**{s['format']}** · {s['modality']} · {shape} · spacing {spacing} mm · {s['orientation']}"


def _text_of(content: Any) -> str:
    """Chat message content -> plain text (Gradio may hand back a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text_of(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content or "")


def model_status(lab: Lab, language: str = "en") -> str:
    """One line saying which model answers, and why none does if it failed to load."""
    t = TEXT[language]
    if lab.load_error is not None:
        return f"**{t['model']}:** `{lab.model_id}` — ⛔ {t['no_model']}: {lab.load_error}"
    note = f" ({t['tiny']})" if lab.model_id == TINY_MODEL else ""
    return f"**{t['model']}:** `{lab.model_id}`{note}"


def build_ui(lab: Lab) -> gr.Blocks:
    """The Blocks app; the server mounts it at ``/``."""

    def on_load(files: Any, window: str, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        paths = _paths(files)
        if not paths:
            return None, "", None, gr.update(visible=False, value=1, maximum=1)

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Reading DICOM")

        try:
            image = lab.load_image(paths if len(paths) > 1 else paths[0], progress=report)
            mid = image.n_slices // 2
            rendered = lab.preview(image, mid, window)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        slider = gr.update(
            visible=image.n_slices > 1, minimum=1, maximum=max(image.n_slices, 2), value=mid + 1
        )
        return image, _describe(image), rendered, slider

    def on_view(image: MedImage | None, index: float, window: str) -> np.ndarray | None:
        if image is None:
            return None
        try:
            return lab.preview(image, min(max(int(index) - 1, 0), image.n_slices - 1), window)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc

    def respond(
        question: str,
        history: list[dict[str, Any]],
        image: MedImage | None,
        window: str,
        max_slices: float,
        max_new_tokens: float,
        lang_label: str,
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        language = LANGS.get(lang_label, "en")
        if image is None:
            raise gr.Error(TEXT[language]["no_image"])
        history = list(history or [])
        turns: list[Turn] = []
        for msg in history:
            if msg.get("role") == "assistant":
                turns.append(Turn("assistant", _text_of(msg.get("content"))))
            else:
                turns.append(Turn("user", _text_of(msg.get("content"))))
        turns.append(Turn("user", question))
        turns[0].images = [image]  # the image belongs to the first question of the conversation
        try:
            chunks = lab.chat(
                turns,
                lab.prompt_options(None if window == "auto" else window, int(max_slices)),
                lab.generation_options(max_new_tokens=int(max_new_tokens)),
            )
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        answer = ""
        for piece in chunks:
            answer += piece
            history[-1] = {"role": "assistant", "content": answer}
            yield history, ""

    def ask_api(
        files: Any, question: str, window: str = "auto", max_slices: float = 16, max_new_tokens: float = 128
    ) -> Iterator[str]:
        """Stateless endpoint for API clients: files + question -> streamed answer text."""
        paths = _paths(files)
        if not paths:
            raise gr.Error("Send at least one image file.")
        try:
            image = lab.load_image(paths if len(paths) > 1 else paths[0])
            chunks = lab.ask(
                image,
                question,
                lab.prompt_options(None if window in (None, "", "auto") else window, int(max_slices)),
                lab.generation_options(max_new_tokens=int(max_new_tokens)),
            )
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        answer = ""
        for piece in chunks:
            answer += piece
            yield answer

    def relabel(lang_label: str) -> tuple[Any, ...]:
        language = LANGS.get(lang_label, "en")
        t = TEXT[language]
        return (
            t["title"],
            model_status(lab, language),
            gr.update(label=t["files"]),
            gr.update(label=t["preview"]),
            gr.update(label=t["slice"]),
            gr.update(label=t["window"]),
            gr.update(label=t["chat"]),
            gr.update(label=t["question"], placeholder=t["placeholder"]),
            gr.update(value=t["send"]),
            gr.update(value=t["clear"]),
            gr.update(label=t["max_slices"]),
            gr.update(label=t["max_new_tokens"]),
            gr.update(label=t["advanced"]),
            f"<small>{DISCLAIMERS[language]}</small>",
        )

    t = TEXT["en"]
    with gr.Blocks(title="medvlab", analytics_enabled=False) as demo:
        with gr.Row():
            with gr.Column(scale=3):
                title = gr.Markdown(t["title"])
                status = gr.Markdown(model_status(lab), elem_id="model-status")
            lang = gr.Radio(list(LANGS), value="English", label=t["language"], elem_id="lang")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label=t["files"], file_count="multiple", type="filepath", elem_id="files")
                info = gr.Markdown(elem_id="image-info")
                preview = gr.Image(
                    label=t["preview"], type="numpy", interactive=False, elem_id="preview", height=420
                )
                slice_slider = gr.Slider(
                    1, 2, value=1, step=1, label=t["slice"], visible=False, elem_id="slice"
                )
                window = gr.Dropdown(list(WINDOW_CHOICES), value="auto", label=t["window"], elem_id="window")
            with gr.Column(scale=1):
                chatbot = gr.Chatbot(label=t["chat"], height=460, elem_id="chat")
                question = gr.Textbox(
                    label=t["question"], placeholder=t["placeholder"], lines=2, elem_id="question"
                )
                with gr.Row():
                    send = gr.Button(t["send"], variant="primary", elem_id="send")
                    clear = gr.Button(t["clear"], elem_id="clear")
                with gr.Accordion(t["advanced"], open=False) as advanced:
                    max_slices = gr.Slider(
                        1, 85, value=min(lab.settings.max_slices, 85), step=1, label=t["max_slices"]
                    )
                    max_new = gr.Slider(
                        16,
                        2048,
                        value=min(lab.settings.max_new_tokens, 2048),
                        step=16,
                        label=t["max_new_tokens"],
                    )
        footer = gr.Markdown(f"<small>{DISCLAIMERS['en']}</small>")
        image_state = gr.State(None)

        files.change(on_load, [files, window], [image_state, info, preview, slice_slider], api_name="load")
        slice_slider.change(on_view, [image_state, slice_slider, window], preview, api_visibility="private")
        window.change(on_view, [image_state, slice_slider, window], preview, api_visibility="private")
        inputs = [question, chatbot, image_state, window, max_slices, max_new, lang]
        send.click(respond, inputs, [chatbot, question], api_visibility="private")
        question.submit(respond, inputs, [chatbot, question], api_visibility="private")
        clear.click(lambda: [], None, chatbot, api_visibility="private")
        lang.change(
            relabel,
            lang,
            [
                title,
                status,
                files,
                preview,
                slice_slider,
                window,
                chatbot,
                question,
                send,
                clear,
                max_slices,
                max_new,
                advanced,
                footer,
            ],
            api_visibility="private",
        )
        gr.api(ask_api, api_name="ask")
        demo.load(
            lambda label: model_status(lab, LANGS.get(label, "en")), lang, status, api_visibility="private"
        )
    return demo
