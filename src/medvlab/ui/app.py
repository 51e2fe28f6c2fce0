"""The web UI (Gradio Blocks): upload, slice viewer with windows, streaming chat, Chinese/English labels.

Every action calls :class:`medvlab.services.Lab`; this module only lays out widgets and wires events.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import gradio as gr
import numpy as np

from medvlab import scratch
from medvlab.config import TINY_MODEL
from medvlab.errors import MedvlabError
from medvlab.imaging.types import MedImage
from medvlab.imaging.windows import WINDOW_CHOICES
from medvlab.seg.infer import Segmentation
from medvlab.services import Lab
from medvlab.ui.uploads import Uploads, checked_paths, forget
from medvlab.vlm.prompting import DISCLAIMERS, Turn, strip_disclaimer

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
        "structured": "Structured answer (JSON)",
        "use_kb": "Ground in knowledge base (top 3)",
        "table": "Structured findings",
        "explain": "Explain (attention map)",
        "heatmaps": "Attention of the last answer",
        "export": "Export PDF report",
        "report": "Report",
        "kb": "Knowledge base of prior reports",
        "kb_query": "Search",
        "kb_search": "Search",
        "kb_files": "Add report files (.txt/.md/.json/.csv)",
        "kb_results": "Results",
        "no_answer": "Ask a question first.",
        "rating": "Rate the last answer",
        "better": "A better answer (optional; becomes training data)",
        "send_feedback": "Send feedback",
        "pick_rating": "Pick 👍 good or 👎 bad first.",
        "thanks": "Thank you — feedback #{id} stored.",
        "span": "Explain only this part of the answer (optional: paste words from it)",
        "not_in_answer": "That text is not part of the last answer; copy it from the answer.",
        "field": "field",
        "value": "value",
        "segment": "Segment (3-D)",
        "volumes": "Measured volumes",
        "use_volumes": "Cite measured volumes in answers",
        "structure": "structure",
        "volume_ml": "volume (mL)",
        "need_volume": "Segmentation needs a 3-D grayscale volume (DICOM series or NIfTI).",
        "seg_files": "Mask files (NIfTI; DICOM SEG for DICOM input)",
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
        "structured": "结构化回答（JSON）",
        "use_kb": "结合知识库（前 3 条）",
        "table": "结构化所见",
        "explain": "解释（注意力图）",
        "heatmaps": "上一个回答的注意力",
        "export": "导出 PDF 报告",
        "report": "报告",
        "kb": "既往报告知识库",
        "kb_query": "检索",
        "kb_search": "检索",
        "kb_files": "添加报告文件（.txt/.md/.json/.csv）",
        "kb_results": "结果",
        "no_answer": "请先提问。",
        "rating": "评价上一个回答",
        "better": "更好的回答（可选，将用于训练）",
        "send_feedback": "提交反馈",
        "pick_rating": "请先选择 👍 good 或 👎 bad。",
        "thanks": "谢谢——反馈 #{id} 已保存。",
        "span": "只解释回答中的这一部分（可选：粘贴回答中的文字）",
        "not_in_answer": "这段文字不在上一个回答中；请从回答中复制。",
        "field": "字段",
        "value": "内容",
        "segment": "三维分割",
        "volumes": "测量体积",
        "use_volumes": "回答中引用测量体积",
        "structure": "结构",
        "volume_ml": "体积（mL）",
        "need_volume": "分割需要三维灰度容积（DICOM 序列或 NIfTI）。",
        "seg_files": "掩膜文件（NIfTI；DICOM 输入另附 DICOM SEG）",
    },
}
LANGS = {"English": "en", "中文": "zh"}
RATINGS = {"👍 good": 1, "👎 bad": -1}
MIN_PREVIEW = 448
"""Small images (64x64 MR) are enlarged for display, by whole pixels so nothing is smoothed away."""


def display(rgb: np.ndarray) -> np.ndarray:
    factor = MIN_PREVIEW // max(rgb.shape[0], rgb.shape[1])
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


# System fonts only: the default theme would make the browser fetch Google Fonts.
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)


@dataclass(frozen=True)
class ChatSession:
    """What one browser session has asked and been shown, for explanations, reports and feedback."""

    qa: list[tuple[str, str]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    hits: list[Any] = field(default_factory=list)
    heatmaps: list[tuple[Any, str]] = field(default_factory=list)


def _describe(image: MedImage) -> str:
    s = image.summary()
    shape = " × ".join(str(x) for x in s["shape"])
    spacing = ", ".join(f"{v:g}" for v in s["spacing_mm"])
    return f"**{s['format']}** · {s['modality']} · {shape} · spacing {spacing} mm · {s['orientation']}"


def _rows(data: dict[str, Any]) -> list[list[str]]:
    return [[k, str(v)] for k, v in data.items() if k != "disclaimer"]


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
        try:
            paths = checked_paths(files, lab.settings)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
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
        slider = gr.update(
            visible=image.n_slices > 1, minimum=1, maximum=max(image.n_slices, 2), value=mid + 1
        )
        return image, uploads, _describe(image), rendered, slider

    def on_view(
        image: MedImage | None, index: float, window: str, seg: Segmentation | None = None
    ) -> np.ndarray | None:
        if image is None:
            return None
        i = min(max(int(index) - 1, 0), image.n_slices - 1)
        try:
            if seg is not None and seg.labels.shape == image.pixels.shape[:3]:
                return display(lab.overlay(image, seg, i, window))
            return display(lab.preview(image, i, window))
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc

    def on_segment(
        image: MedImage | None,
        index: float,
        window: str,
        lang_label: str,
        uploads: Uploads | None = None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        t = TEXT[LANGS.get(lang_label, "en")]
        if image is None or image.is_rgb or image.n_slices < 2:
            raise gr.Error(t["need_volume"])
        progress(0.0, desc=t["segment"])

        def report(done: int, total: int) -> None:
            progress((done, total), desc=t["segment"])

        try:
            seg = lab.segment(image, progress=report)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        rows = [[name, f"{ml:.1f}"] for name, ml in seg.volumes_ml.items()]
        # jump to the slice where the structures are largest, so the overlay is seen at once
        areas = (seg.labels > 0).sum(axis=(1, 2))
        best = int(areas.argmax()) + 1 if areas.any() else int(index)
        return (
            seg,
            on_view(image, best, window, seg),
            rows,
            gr.update(value=best),
            _seg_files(image, seg, uploads),
        )

    def _seg_files(image: MedImage, seg: Segmentation, uploads: Uploads | None) -> list[str]:
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

    def _turns(history: list[dict[str, Any]], question: str, image: MedImage) -> list[Turn]:
        turns: list[Turn] = []
        for msg in history:
            if msg.get("role") == "assistant":
                turns.append(Turn("assistant", _text_of(msg.get("content"))))
            else:
                turns.append(Turn("user", _text_of(msg.get("content"))))
        turns.append(Turn("user", question))
        turns[0].images = [image]  # the image belongs to the first question of the conversation
        return turns

    def respond(
        question: str,
        history: list[dict[str, Any]],
        image: MedImage | None,
        window: str,
        max_slices: float,
        max_new_tokens: float,
        lang_label: str,
        structured_on: bool,
        kb_on: bool,
        session: ChatSession | None,
        seg: Segmentation | None = None,
        volumes_on: bool = False,
    ) -> Iterator[tuple[Any, ...]]:
        language = LANGS.get(lang_label, "en")
        if image is None:
            raise gr.Error(TEXT[language]["no_image"])
        history = list(history or [])
        session = session or ChatSession()
        turns = _turns(history, question, image)
        prompt = lab.prompt_options(None if window == "auto" else window, int(max_slices))
        generation = lab.generation_options(max_new_tokens=int(max_new_tokens))
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        try:
            volumes = seg.volumes_ml if (volumes_on and seg is not None) else None
            result = lab.answer(
                turns, prompt, generation, structured=structured_on, kb=3 if kb_on else 0, volumes_ml=volumes
            )
            if result.data is not None:
                data = result.data
                text = "```json\n" + json.dumps(data, ensure_ascii=False, indent=2) + "\n```"
                history[-1] = {"role": "assistant", "content": text}
                session = replace(
                    session,
                    structured=data,
                    qa=[*session.qa, (question, json.dumps(data, ensure_ascii=False))],
                )
                yield history, "", _rows(data), session
                return
            answer = ""
            for piece in result.chunks or ():
                answer += piece
                history[-1] = {"role": "assistant", "content": answer}
                yield history, "", gr.update(), session
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        hits = result.hits
        session = replace(
            session, qa=[*session.qa, (question, answer)], hits=[*session.hits, *hits], heatmaps=[]
        )
        yield history, "", gr.update(), session

    def explain(
        image: MedImage | None,
        window: str,
        max_slices: float,
        lang_label: str,
        span_text: str,
        session: ChatSession | None,
    ) -> tuple[list[tuple[Any, str]], ChatSession]:
        language = LANGS.get(lang_label, "en")
        if image is None or session is None or not session.qa:
            raise gr.Error(TEXT[language]["no_answer"])
        question, answer = session.qa[-1]
        answer = strip_disclaimer(answer)
        span = None
        if span_text and span_text.strip():
            start = answer.find(span_text.strip())
            if start < 0:
                raise gr.Error(TEXT[language]["not_in_answer"])
            span = (start, start + len(span_text.strip()))
        prompt = lab.prompt_options(None if window == "auto" else window, int(max_slices))
        try:
            heatmaps = lab.explain([Turn("user", question, [image])], answer, prompt, span)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        return heatmaps, replace(session, heatmaps=heatmaps)

    def export(
        image: MedImage | None,
        window: str,
        index: float,
        lang_label: str,
        session: ChatSession | None,
        seg: Segmentation | None = None,
    ) -> str:
        language = LANGS.get(lang_label, "en")
        if image is None or session is None or not session.qa:
            raise gr.Error(TEXT[language]["no_answer"])
        try:
            pdf = lab.report(
                image,
                session.qa,
                window=None if window == "auto" else window,
                slice_index=min(max(int(index) - 1, 0), image.n_slices - 1) if image.n_slices > 1 else 0,
                structured=session.structured,
                heatmaps=session.heatmaps,
                citations=session.hits,
                segmentation=seg,
                language=language,
            )
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        folder = scratch.keep_dir("ui-report-")  # deleted after MEDVLAB_UI_FILE_TTL_S
        path = folder / f"medvlab-report-{time.strftime('%Y%m%d-%H%M%S')}.pdf"
        path.write_bytes(pdf)
        return str(path)

    def send_feedback(
        uploads: Uploads | None,
        rating: str | None,
        better: str,
        window: str,
        max_slices: float,
        lang_label: str,
        session: ChatSession | None,
    ) -> str:
        t = TEXT[LANGS.get(lang_label, "en")]
        if session is None or not session.qa or uploads is None:
            raise gr.Error(t["no_answer"])
        if rating not in RATINGS:
            raise gr.Error(t["pick_rating"])
        question, answer = session.qa[-1]
        try:
            fid = lab.record_feedback_uploads(
                uploads.files,
                question,
                answer,
                RATINGS[rating],
                better or None,
                None if window == "auto" else window,
                int(max_slices),
            )
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        return t["thanks"].format(id=fid)

    def kb_search(query: str) -> str:
        try:
            hits = lab.kb_search(query, 5)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        if not hits:
            return "—"
        return "\n\n".join(f"**{h.citation()}** `{'+'.join(h.via)}`\n\n{h.snippet.text[:400]}" for h in hits)

    def kb_add(files: Any) -> str:
        try:
            paths = checked_paths(files, lab.settings)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        if not paths:
            return ""
        try:
            n = lab.kb_add(paths)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        finally:
            forget(paths)
        return f"+{n} → {lab.kb_count()}"

    def ask_api(
        files: Any, question: str, window: str = "auto", max_slices: float = 16, max_new_tokens: float = 128
    ) -> Iterator[str]:
        """Stateless endpoint for API clients: files + question -> streamed answer text."""
        try:
            paths = checked_paths(files, lab.settings)
        except MedvlabError as exc:
            raise gr.Error(str(exc)) from exc
        if not paths:
            raise gr.Error("Send at least one image file.")
        try:
            try:
                image = lab.load_image(paths if len(paths) > 1 else paths[0])
            finally:
                forget(paths)
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
            gr.update(label=t["structured"]),
            gr.update(label=t["use_kb"]),
            gr.update(label=t["table"]),
            gr.update(value=t["explain"]),
            gr.update(value=t["export"]),
            gr.update(label=t["heatmaps"]),
            gr.update(label=t["span"]),
            gr.update(label=t["rating"]),
            gr.update(label=t["better"]),
            gr.update(value=t["send_feedback"]),
            gr.update(label=t["kb"]),
            gr.update(label=t["kb_query"]),
            gr.update(value=t["kb_search"]),
            gr.update(label=t["kb_files"]),
            gr.update(value=t["segment"]),
            gr.update(label=t["volumes"], headers=[t["structure"], t["volume_ml"]]),
            gr.update(label=t["use_volumes"]),
            gr.update(label=t["seg_files"]),
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
                segment_btn = gr.Button(t["segment"], elem_id="segment")
                volumes_table = gr.Dataframe(
                    headers=[t["structure"], t["volume_ml"]],
                    label=t["volumes"],
                    interactive=False,
                    elem_id="volumes",
                )
                volumes_on = gr.Checkbox(False, label=t["use_volumes"], elem_id="use-volumes")
                seg_files = gr.File(label=t["seg_files"], file_count="multiple", elem_id="seg-files")
            with gr.Column(scale=1):
                chatbot = gr.Chatbot(label=t["chat"], height=460, elem_id="chat")
                question = gr.Textbox(
                    label=t["question"], placeholder=t["placeholder"], lines=2, elem_id="question"
                )
                with gr.Row():
                    structured_on = gr.Checkbox(False, label=t["structured"], elem_id="structured")
                    kb_on = gr.Checkbox(False, label=t["use_kb"], elem_id="use-kb")
                with gr.Row():
                    send = gr.Button(t["send"], variant="primary", elem_id="send")
                    clear = gr.Button(t["clear"], elem_id="clear")
                table = gr.Dataframe(
                    headers=[t["field"], t["value"]],
                    label=t["table"],
                    interactive=False,
                    wrap=True,
                    elem_id="table",
                )
                with gr.Row():
                    explain_btn = gr.Button(t["explain"], elem_id="explain")
                    export_btn = gr.Button(t["export"], elem_id="export")
                span_text = gr.Textbox(label=t["span"], lines=1, elem_id="span")
                gallery = gr.Gallery(label=t["heatmaps"], columns=4, height=260, elem_id="heatmaps")
                report_file = gr.File(label=t["report"], elem_id="report")
                with gr.Group():
                    rating = gr.Radio(list(RATINGS), label=t["rating"], elem_id="rating")
                    better = gr.Textbox(label=t["better"], lines=2, elem_id="better")
                    feedback_btn = gr.Button(t["send_feedback"], elem_id="send-feedback")
                    feedback_status = gr.Markdown(elem_id="feedback-status")
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
        with gr.Accordion(t["kb"], open=False) as kb_panel:
            with gr.Row():
                kb_query = gr.Textbox(label=t["kb_query"], scale=4, elem_id="kb-query")
                kb_button = gr.Button(t["kb_search"], scale=1, elem_id="kb-search")
            kb_results = gr.Markdown(elem_id="kb-results")
            kb_files = gr.File(
                label=t["kb_files"], file_count="multiple", type="filepath", elem_id="kb-files"
            )
            kb_status = gr.Markdown()
        footer = gr.Markdown(f"<small>{DISCLAIMERS['en']}</small>")
        image_state = gr.State(None)
        uploads_state = gr.State(None)
        session = gr.State(None)
        seg_state = gr.State(None)

        files.change(
            on_load,
            [files, window],
            [image_state, uploads_state, info, preview, slice_slider],
            api_name="load",
        )
        files.change(
            lambda: (None, [], None), None, [seg_state, volumes_table, seg_files], api_visibility="private"
        )
        view_inputs = [image_state, slice_slider, window, seg_state]
        slice_slider.change(on_view, view_inputs, preview, api_visibility="private")
        window.change(on_view, view_inputs, preview, api_visibility="private")
        segment_btn.click(
            on_segment,
            [image_state, slice_slider, window, lang, uploads_state],
            [seg_state, preview, volumes_table, slice_slider, seg_files],
            api_visibility="private",
        )
        inputs = [
            question,
            chatbot,
            image_state,
            window,
            max_slices,
            max_new,
            lang,
            structured_on,
            kb_on,
            session,
            seg_state,
            volumes_on,
        ]
        outputs = [chatbot, question, table, session]
        send.click(respond, inputs, outputs, api_visibility="private")
        question.submit(respond, inputs, outputs, api_visibility="private")
        clear.click(
            lambda: ([], None, [], None), None, [chatbot, session, gallery, table], api_visibility="private"
        )
        explain_btn.click(
            explain,
            [image_state, window, max_slices, lang, span_text, session],
            [gallery, session],
            api_visibility="private",
        )
        export_btn.click(
            export,
            [image_state, window, slice_slider, lang, session, seg_state],
            report_file,
            api_visibility="private",
        )
        feedback_btn.click(
            send_feedback,
            [uploads_state, rating, better, window, max_slices, lang, session],
            feedback_status,
            api_visibility="private",
        )
        kb_button.click(kb_search, kb_query, kb_results, api_name="kb_search")
        kb_query.submit(kb_search, kb_query, kb_results, api_visibility="private")
        kb_files.upload(kb_add, kb_files, kb_status, api_visibility="private")
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
                structured_on,
                kb_on,
                table,
                explain_btn,
                export_btn,
                gallery,
                span_text,
                rating,
                better,
                feedback_btn,
                kb_panel,
                kb_query,
                kb_button,
                kb_files,
                segment_btn,
                volumes_table,
                volumes_on,
                seg_files,
                footer,
            ],
            api_visibility="private",
        )
        gr.api(ask_api, api_name="ask")
        demo.load(
            lambda label: model_status(lab, LANGS.get(label, "en")), lang, status, api_visibility="private"
        )
    return demo
