"""Every text the page shows, in one keyed table (``TEXT[language][key]``), and the registry that relabels
the page when the language changes.

Panels create their translated components through :meth:`Texts.add` (or register them with
:meth:`Texts.register` / :meth:`Texts.computed`), naming for each text-bearing property the key it takes.
One handler, :meth:`Texts.relabel`, then answers a language change with ``{component: gr.update(...)}`` for
every registered component, so nothing has to line up by position.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import gradio as gr
from gradio.blocks import Block

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
"""Choices of the language radio -> language code."""

Props = Mapping[str, str | Sequence[str]]
"""Text-bearing properties of one component -> the key (or, for ``headers``, the keys) of their text."""

B = TypeVar("B", bound=Block)


def language_of(label: str | None) -> str:
    """The language code for a choice of the language radio (English when unknown)."""
    return LANGS.get(label or "", "en")


def texts_of(label: str | None) -> dict[str, str]:
    """The texts for a choice of the language radio."""
    return TEXT[language_of(label)]


def translate(props: Props, language: str) -> dict[str, Any]:
    """The property values in ``language``; a key missing from the table raises ``KeyError``."""
    t = TEXT[language]
    return {prop: t[key] if isinstance(key, str) else [t[k] for k in key] for prop, key in props.items()}


class Texts:
    """The translated components of one page and how each takes its texts."""

    def __init__(self, language: str = "en") -> None:
        self.language = language
        """The language components are created in."""
        self.keyed: dict[Block, Props] = {}
        self.dynamic: dict[Block, Callable[[str], str]] = {}

    def add(self, cls: Callable[..., B], props: Props, **kwargs: Any) -> B:
        """``cls(**kwargs)`` with its text properties filled in from ``props``, registered for relabelling."""
        return self.register(cls(**translate(props, self.language), **kwargs), props)

    def register(self, block: B, props: Props) -> B:
        translate(props, self.language)  # every key must exist
        self.keyed[block] = dict(props)
        return block

    def computed(self, block: B, value: Callable[[str], str]) -> B:
        """A component whose value is computed for a language (e.g. the model status line)."""
        self.dynamic[block] = value
        return block

    @property
    def blocks(self) -> list[Block]:
        return [*self.keyed, *self.dynamic]

    def updates(self, language: str) -> dict[Block, Any]:
        """``{component: gr.update(...)}`` for every registered component, in ``language``."""
        out: dict[Block, Any] = {b: gr.update(**translate(p, language)) for b, p in self.keyed.items()}
        out.update({b: gr.update(value=value(language)) for b, value in self.dynamic.items()})
        return out

    def relabel(self, lang_label: str) -> dict[Block, Any]:
        """The handler of the language radio."""
        return self.updates(language_of(lang_label))

    def wire(self, lang: gr.Radio) -> None:
        lang.change(self.relabel, lang, self.blocks, api_visibility="private")
