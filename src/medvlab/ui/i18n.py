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
        "kb_list": "Stored snippets",
        "kb_col_id": "id",
        "kb_col_title": "title",
        "kb_col_source": "source",
        "kb_col_language": "language",
        "kb_col_text": "text",
        "kb_page": "Page",
        "kb_prev": "Previous",
        "kb_next": "Next",
        "kb_filter": "Only snippets containing",
        "kb_page_info": "Page {page} of {pages} · {total} snippet(s)",
        "kb_remove_id": "Snippet id to remove",
        "kb_remove": "Remove snippet",
        "kb_removed": "Removed snippet {id}: {title}",
        "kb_confirm_clear": "Yes, remove every snippet",
        "kb_clear": "Clear knowledge base",
        "kb_need_confirm": "Tick the confirmation box first: clearing cannot be undone.",
        "kb_cleared": "Removed {n} snippet(s); the knowledge base is empty.",
        "kb_added": "Added {added} new snippet(s), {dup} already stored; {total} in all.",
        "seg_stats": "Structure statistics",
        "stat_voxels": "voxels",
        "stat_mean": "mean",
        "stat_std": "std",
        "stat_min": "min",
        "stat_max": "max",
        "stat_centroid": "centroid (mm, RAS)",
        "seg_preview": "Preview: axial, coronal, sagittal through the structures",
        "no_answer": "Ask a question first.",
        "rating": "Rate the last answer",
        "better": "A better answer (optional; becomes training data)",
        "send_feedback": "Send feedback",
        "pick_rating": "Pick good or bad first.",
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
        "pacs": "PACS (DICOMweb)",
        "pacs_name": "PACS",
        "pacs_patient": "Patient ID",
        "pacs_accession": "Accession",
        "pacs_date": "Study date",
        "pacs_date_hint": "YYYYMMDD[-YYYYMMDD]",
        "pacs_modality": "Modality",
        "pacs_search": "Search",
        "pacs_studies": "Studies (click one to list its series)",
        "pacs_study": "Study UID",
        "pacs_series": "Series (click one to pick it)",
        "pacs_series_pick": "Series UID (empty: the largest image series)",
        "pacs_study_uid": "study UID",
        "pacs_series_uid": "series UID",
        "pacs_date_col": "date",
        "pacs_modalities": "modalities",
        "pacs_description": "description",
        "pacs_number": "number",
        "pacs_instances": "instances",
        "pacs_open": "Open in viewer",
        "pacs_segment": "Segment → store SEG + SR",
        "pacs_report": "Report → store PDF + SR",
        "pacs_import": "Import prior reports into the knowledge base",
        "pacs_question": "Question for the report",
        "pacs_no_study": "Pick a study first (search, then click a row).",
        "pacs_no_question": "Type the question for the report first.",
        "pacs_opened": "Opened {n} file(s) of series {series} in the viewer.",
        "pacs_stored": "Stored {kinds} in study {study}.",
        "pacs_imported": "Imported {n} prior report(s); the knowledge base now holds {total}.",
        # viewer (issue 12)
        "n_files": "{n} file(s)",
        "n_slices": "{n} slices",
        "spacing": "spacing",
        "plane": "Plane",
        "axial": "Axial",
        "coronal": "Coronal",
        "sagittal": "Sagittal",
        "zoom": "Zoom",
        "level": "Window level (centre)",
        "width": "Window width",
        "overlays": "Overlays",
        "ov_mask": "segmentation mask",
        "ov_attention": "attention map",
        "slice_of": "slice {n}/{total}",
        "slice_hint": "Mouse wheel over the picture or the arrow keys step through the slices.",
        "attention_elsewhere": "attention maps on other slices (nearest: {n})",
        "attention_label": "attention · slice {n}/{total}",
        "attention_2d": "attention",
        "attention_none": " (no attention reached it)",
        "win_auto": "automatic",
        "win_medgemma": "MedGemma (three CT windows)",
        "win_lung": "lung",
        "win_mediastinum": "mediastinum",
        "win_bone": "bone",
        "win_brain": "brain",
        "win_abdomen": "abdomen",
        "win_soft_tissue": "soft tissue",
        "win_liver": "liver",
        "win_subdural": "subdural",
        "good": "good",
        "bad": "bad",
        "f_findings": "findings",
        "f_location": "location",
        "f_size": "size",
        "f_impression": "impression",
        "f_confidence": "confidence",
        "f_recommendations": "recommendations",
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
        "kb_list": "已存片段",
        "kb_col_id": "编号",
        "kb_col_title": "标题",
        "kb_col_source": "来源",
        "kb_col_language": "语言",
        "kb_col_text": "内容",
        "kb_page": "页码",
        "kb_prev": "上一页",
        "kb_next": "下一页",
        "kb_filter": "仅显示包含以下文字的片段",
        "kb_page_info": "第 {page}/{pages} 页 · 共 {total} 条",
        "kb_remove_id": "要删除的片段编号",
        "kb_remove": "删除片段",
        "kb_removed": "已删除片段 {id}：{title}",
        "kb_confirm_clear": "确认删除全部片段",
        "kb_clear": "清空知识库",
        "kb_need_confirm": "请先勾选确认框：清空后无法恢复。",
        "kb_cleared": "已删除 {n} 条片段，知识库已清空。",
        "kb_added": "新增 {added} 条，{dup} 条已存在；共 {total} 条。",
        "seg_stats": "结构统计",
        "stat_voxels": "体素数",
        "stat_mean": "均值",
        "stat_std": "标准差",
        "stat_min": "最小值",
        "stat_max": "最大值",
        "stat_centroid": "质心（mm，RAS）",
        "seg_preview": "预览：经结构中心的轴位、冠状位、矢状位",
        "no_answer": "请先提问。",
        "rating": "评价上一个回答",
        "better": "更好的回答（可选，将用于训练）",
        "send_feedback": "提交反馈",
        "pick_rating": "请先选择“好”或“差”。",
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
        "pacs": "PACS（DICOMweb）",
        "pacs_name": "PACS",
        "pacs_patient": "患者 ID",
        "pacs_accession": "检查号",
        "pacs_date": "检查日期",
        "pacs_date_hint": "YYYYMMDD[-YYYYMMDD]",
        "pacs_modality": "模态",
        "pacs_search": "检索",
        "pacs_studies": "检查（点击一行列出其序列）",
        "pacs_study": "检查 UID",
        "pacs_series": "序列（点击一行选中）",
        "pacs_series_pick": "序列 UID（留空：图像最多的序列）",
        "pacs_study_uid": "检查 UID",
        "pacs_series_uid": "序列 UID",
        "pacs_date_col": "日期",
        "pacs_modalities": "模态",
        "pacs_description": "描述",
        "pacs_number": "序号",
        "pacs_instances": "实例数",
        "pacs_open": "在查看器中打开",
        "pacs_segment": "分割 → 存回 SEG + SR",
        "pacs_report": "报告 → 存回 PDF + SR",
        "pacs_import": "将既往报告导入知识库",
        "pacs_question": "报告的问题",
        "pacs_no_study": "请先选择一个检查（检索后点击一行）。",
        "pacs_no_question": "请先输入报告的问题。",
        "pacs_opened": "已在查看器中打开序列 {series} 的 {n} 个文件。",
        "pacs_stored": "已将 {kinds} 存入检查 {study}。",
        "pacs_imported": "已导入 {n} 份既往报告；知识库现有 {total} 条。",
        # viewer (issue 12)
        "n_files": "{n} 个文件",
        "n_slices": "{n} 层",
        "spacing": "间距",
        "plane": "平面",
        "axial": "轴位",
        "coronal": "冠状位",
        "sagittal": "矢状位",
        "zoom": "缩放",
        "level": "窗位（中心）",
        "width": "窗宽",
        "overlays": "叠加显示",
        "ov_mask": "分割掩膜",
        "ov_attention": "注意力图",
        "slice_of": "第 {n}/{total} 层",
        "slice_hint": "在图像上滚动鼠标滚轮或按方向键逐层浏览。",
        "attention_elsewhere": "注意力图在其他层（最近：第 {n} 层）",
        "attention_label": "注意力 · 第 {n}/{total} 层",
        "attention_2d": "注意力",
        "attention_none": "（注意力未到达此图）",
        "win_auto": "自动",
        "win_medgemma": "MedGemma（CT 三窗）",
        "win_lung": "肺窗",
        "win_mediastinum": "纵隔窗",
        "win_bone": "骨窗",
        "win_brain": "脑窗",
        "win_abdomen": "腹部窗",
        "win_soft_tissue": "软组织窗",
        "win_liver": "肝窗",
        "win_subdural": "硬膜下窗",
        "good": "好",
        "bad": "差",
        "f_findings": "所见",
        "f_location": "部位",
        "f_size": "大小",
        "f_impression": "印象",
        "f_confidence": "置信度",
        "f_recommendations": "建议",
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

    @property
    def tables(self) -> list[Block]:
        """Tables whose column headers are translated: their rows are inputs of the relabel handler."""
        return [b for b, p in self.keyed.items() if isinstance(b, gr.Dataframe) and "headers" in p]

    def updates(self, language: str, rows: Sequence[Any] = ()) -> dict[Block, Any]:
        """``{component: gr.update(...)}`` for every registered component, in ``language``.

        ``rows`` are the current values of :attr:`tables`: Gradio 6 shows new headers only when they come
        with the rows, so they are sent both ways (the property serves the tables' later values)."""
        current = dict(zip(self.tables, rows, strict=False))
        out: dict[Block, Any] = {}
        for b, p in self.keyed.items():
            props = translate(p, language)
            if b in self.tables:
                props["value"] = {"headers": props["headers"], "data": table_rows(current.get(b))}
            out[b] = gr.update(**props)
        out.update({b: gr.update(value=value(language)) for b, value in self.dynamic.items()})
        return out

    def relabel(self, lang_label: str, *rows: Any) -> dict[Block, Any]:
        """The handler of the language radio."""
        return self.updates(language_of(lang_label), rows)

    def wire(self, lang: gr.Radio) -> None:
        lang.change(self.relabel, [lang, *self.tables], self.blocks, api_visibility="private")


def table_rows(value: Any) -> list[list[Any]]:
    """A table's rows (from a pandas DataFrame, a list, or a Gradio value dict), without blank rows."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):
        data = value.values.tolist()
    elif isinstance(value, dict):
        data = list(value.get("data") or [])
    else:
        data = list(value)
    return [list(r) for r in data if any(c not in (None, "") for c in r)]
