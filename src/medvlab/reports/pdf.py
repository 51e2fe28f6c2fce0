"""PDF reports (reportlab): thumbnails, questions and answers, structured findings, citations, volumes.

Chinese needs a font with CJK glyphs. A TrueType CJK font found on the system is embedded (WenQuanYi
Micro Hei from Debian's fonts-wqy-microhei, Droid Sans Fallback, or MEDVLAB_CJK_FONT); without one the
standard Adobe CID font STSong-Light is referenced, which PDF viewers supply themselves.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from PIL import Image

from medvlab.vlm.prompting import DISCLAIMERS

logger = logging.getLogger(__name__)

CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
)


def cjk_font_files() -> list[str]:
    """The CJK font files on this machine, ``MEDVLAB_CJK_FONT`` first (also used for Chinese plot titles)."""
    return [p for p in (os.environ.get("MEDVLAB_CJK_FONT", ""), *CJK_FONT_FILES) if p and Path(p).exists()]


LABELS = {
    "en": {
        "title": "medvlab research report",
        "generated": "Generated",
        "model": "Model",
        "adapter": "Adapter",
        "image": "Image",
        "qa": "Questions and answers",
        "q": "Q",
        "a": "A",
        "structured": "Structured findings",
        "citations": "Prior reports cited",
        "volumes": "Segmentation volumes",
        "structure": "Structure",
        "volume": "Volume (mL)",
        "field": "Field",
        "value": "Value",
        "slice": "slice {n}/{total}",
        "window": "window",
        "auto": "auto",
        "segmentation": "segmentation",
        "spacing": "spacing",
    },
    "zh": {
        "title": "medvlab 科研报告",
        "generated": "生成时间",
        "model": "模型",
        "adapter": "适配器",
        "image": "图像",
        "qa": "问题与回答",
        "q": "问",
        "a": "答",
        "structured": "结构化所见",
        "citations": "引用的既往报告",
        "volumes": "分割体积",
        "structure": "结构",
        "volume": "体积（毫升）",
        "field": "字段",
        "value": "内容",
        "slice": "第 {n}/{total} 层",
        "window": "窗",
        "auto": "自动",
        "segmentation": "分割",
        "spacing": "间距",
    },
}

FIELD_NAMES = {
    "en": {
        "findings": "Findings",
        "location": "Location",
        "size": "Size",
        "impression": "Impression",
        "confidence": "Confidence",
        "recommendations": "Recommendations",
    },
    "zh": {
        "findings": "所见",
        "location": "部位",
        "size": "大小",
        "impression": "印象",
        "confidence": "置信度",
        "recommendations": "建议",
    },
}
"""The structured answer's field names (medvlab.vlm.structured.FIELDS) as the report prints them."""


@dataclass
class ReportContent:
    """Everything a report shows. Pictures are ready-rendered (windowed slice, heatmap overlay)."""

    model_id: str
    language: str = "en"
    pictures: list[tuple[Image.Image, str]] = field(default_factory=list)
    qa: list[tuple[str, str]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    citations: list[str] = field(default_factory=list)
    volumes_ml: dict[str, float] | None = None
    adapter: str | None = None
    image_summary: str = ""
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now().astimezone())


def _font() -> str:
    """Register and return the name of a font that can draw Chinese."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    if "MedvlabCJK" in pdfmetrics.getRegisteredFontNames():
        return "MedvlabCJK"
    for path in cjk_font_files():
        try:
            pdfmetrics.registerFont(TTFont("MedvlabCJK", path, subfontIndex=0))
            return "MedvlabCJK"
        except Exception as exc:  # e.g. an OpenType-CFF font reportlab cannot embed
            logger.debug("cannot use %s: %s", path, exc)
    logger.info("no embeddable CJK font found; using the CID font STSong-Light")
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light"


def _para_text(text: str) -> str:
    return escape(text).replace("\n", "<br/>")


def build_pdf(content: ReportContent) -> bytes:
    """Render the report to PDF bytes."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table

    font = _font()
    t = LABELS.get(content.language, LABELS["en"])
    base = getSampleStyleSheet()
    body = ParagraphStyle(
        "body", parent=base["BodyText"], fontName=font, fontSize=10, leading=14, wordWrap="CJK"
    )
    h1 = ParagraphStyle("h1", parent=base["Title"], fontName=font, fontSize=18, leading=22)
    h2 = ParagraphStyle("h2", parent=base["Heading2"], fontName=font, fontSize=13, leading=17)
    warn = ParagraphStyle(
        "warn",
        parent=body,
        textColor=colors.HexColor("#8a1c1c"),
        backColor=colors.HexColor("#fdecea"),
        borderPadding=6,
        spaceBefore=4,
        spaceAfter=8,
    )
    # no emoji: PDF fonts (CJK ones included) have no glyph for the warning sign
    disclaimer = DISCLAIMERS.get(content.language, DISCLAIMERS["en"]).removeprefix("⚠️").strip()

    story: list[Any] = [Paragraph(_para_text(t["title"]), h1), Paragraph(_para_text(disclaimer), warn)]
    meta = [
        [t["generated"], content.created.strftime("%Y-%m-%d %H:%M %Z")],
        [t["model"], content.model_id],
    ]
    if content.adapter:
        meta.append([t["adapter"], content.adapter])
    if content.image_summary:
        meta.append([t["image"], content.image_summary])
    story.append(
        _table(
            [[Paragraph(_para_text(a), body), Paragraph(_para_text(b), body)] for a, b in meta],
            [35 * mm, 135 * mm],
            font,
        )
    )

    if content.pictures:
        cells = []
        for pic, caption in content.pictures[:6]:
            buf = io.BytesIO()
            small = pic.convert("RGB")
            small.thumbnail((1024, 1024))  # 80 mm at 300 dpi; keeps reports small
            small.save(buf, format="JPEG", quality=90)
            buf.seek(0)
            w, h = pic.size
            scale = min(80 * mm / w, 80 * mm / h)
            cells.append(
                [RLImage(buf, width=w * scale, height=h * scale), Paragraph(_para_text(caption), body)]
            )
        rows = [[c for cell in cells[i : i + 2] for c in [cell]] for i in range(0, len(cells), 2)]
        grid = [[Table([[c[0]], [c[1]]]) for c in row] for row in rows]
        story += [Spacer(1, 4 * mm), Table(grid, colWidths=[85 * mm, 85 * mm])]

    if content.qa:
        story.append(Paragraph(_para_text(t["qa"]), h2))
        for q, a in content.qa:
            story.append(Paragraph(f"<b>{t['q']}:</b> {_para_text(q)}", body))
            story.append(Paragraph(f"<b>{t['a']}:</b> {_para_text(a)}", body))
            story.append(Spacer(1, 3 * mm))

    if content.structured:
        story.append(Paragraph(_para_text(t["structured"]), h2))
        names = FIELD_NAMES.get(content.language, FIELD_NAMES["en"])
        rows = [
            [Paragraph(_para_text(names.get(str(k), str(k))), body), Paragraph(_para_text(str(v)), body)]
            for k, v in content.structured.items()
            if k != "disclaimer"
        ]
        story.append(_table([[t["field"], t["value"]], *rows], [40 * mm, 130 * mm], font, header=True))

    if content.volumes_ml:
        story.append(Paragraph(_para_text(t["volumes"]), h2))
        vol_rows = [[name, f"{ml:.1f}"] for name, ml in content.volumes_ml.items()]
        story.append(
            _table([[t["structure"], t["volume"]], *vol_rows], [100 * mm, 40 * mm], font, header=True)
        )

    if content.citations:
        story.append(Paragraph(_para_text(t["citations"]), h2))
        story += [Paragraph(_para_text(c), body) for c in content.citations]

    story += [Spacer(1, 6 * mm), Paragraph(_para_text(disclaimer), warn)]
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=t["title"],
        author="medvlab",
        subject=disclaimer,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
    )
    doc.build(story)
    return out.getvalue()


def _table(rows: Sequence[Sequence[Any]], widths: list[float], font: str, header: bool = False) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table(list(rows), colWidths=widths)
    style = [
        ("FONTNAME", (0, 0), (-1, -1), font),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c8c8c8")),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f7")))
    table.setStyle(TableStyle(style))
    return table
