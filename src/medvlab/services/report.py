"""The one report pipeline: answer (optionally grounded, segmented, structured, explained), then a PDF,
or the PDF as a DICOM Encapsulated PDF in the source study, or the answer as a DICOM text SR there. The
CLI and the API both call ``make_report``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medvlab.config import Language
from medvlab.imaging import MedImage
from medvlab.vlm.prompting import Turn

if TYPE_CHECKING:
    from PIL import Image

    from medvlab.kb.retrieve import Hit
    from medvlab.seg.infer import Segmentation
    from medvlab.services.lab import Lab


@dataclass(frozen=True)
class ReportRequest:
    """What goes into one report."""

    question: str
    answer: str | None = None
    """An answer already given; generated when None."""
    window: str | None = None
    max_slices: int | None = None
    language: Language | None = None
    max_new_tokens: int | None = None
    structured: bool = False
    heatmap: bool = False
    kb: int = 0
    segment: bool = False


def make_report(
    lab: Lab, image: MedImage, req: ReportRequest, cancel: threading.Event | None = None
) -> tuple[bytes, str]:
    """(PDF bytes, the answer) for ``image`` and ``req``."""
    turns = [Turn("user", req.question, [image])]
    prompt = lab.prompt_options(req.window, req.max_slices, req.language)
    generation = lab.generation_options(max_new_tokens=req.max_new_tokens)
    hits = lab.kb_search(req.question, req.kb) if req.kb else []
    segmentation = lab.segment(image) if req.segment else None
    volumes = segmentation.volumes_ml if segmentation is not None else None
    answer = req.answer or "".join(
        lab.chat(turns, prompt, generation, cancel=cancel, grounding=hits, measurements=volumes)
    )
    findings = lab.structured(turns, prompt, generation, cancel=cancel) if req.structured else None
    heatmaps = lab.explain(turns, answer, prompt) if req.heatmap else []
    pdf = build_report(
        lab,
        image,
        [(req.question, answer)],
        window=req.window,
        structured=findings,
        heatmaps=heatmaps,
        citations=hits,
        segmentation=segmentation,
        language=req.language,
    )
    return pdf, answer


def as_dicom(pdf: bytes, image: MedImage) -> bytes:
    """The PDF as a DICOM Encapsulated PDF that belongs to ``image``'s study (Part 10 bytes)."""
    from pydicom.filebase import DicomBytesIO

    from medvlab.imaging.documents import encapsulate_pdf

    out = DicomBytesIO()
    encapsulate_pdf(pdf, image.metadata).save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


def answer_sr(
    lab: Lab, image: MedImage, question: str, answer: str, language: Language | None = None
) -> bytes:
    """The question and answer as a DICOM text SR in ``image``'s study (Part 10 bytes), naming the model
    and adapter and carrying the research-use disclaimer."""
    from pydicom.filebase import DicomBytesIO

    from medvlab.imaging.documents import source_headers
    from medvlab.imaging.structured_reports import answer_report
    from medvlab.vlm.prompting import DISCLAIMERS, detect_language, strip_disclaimer

    lang = language or detect_language(question)
    sr = answer_report(
        source_headers(image.metadata),
        question,
        strip_disclaimer(answer),  # the SR carries the disclaimer as its own item
        model=lab.model_id,
        adapter=lab.adapter,
        disclaimer=DISCLAIMERS[lang],
        language=lang,
    )
    out = DicomBytesIO()
    sr.save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


def build_report(
    lab: Lab,
    image: MedImage,
    qa: Sequence[tuple[str, str]],
    *,
    window: str | None = None,
    slice_index: int | None = None,
    structured: dict[str, Any] | None = None,
    heatmaps: Sequence[tuple[Image.Image, str]] = (),
    citations: Sequence[Hit] = (),
    volumes_ml: dict[str, float] | None = None,
    segmentation: Segmentation | None = None,
    language: Language | None = None,
) -> bytes:
    """A PDF report of one image and its conversation.

    With ``segmentation``, the report also shows the mask on the slice where it is largest and lists the
    measured volumes (unless ``volumes_ml`` is given).
    """
    from medvlab.imaging.windows import render_slice, to_pil
    from medvlab.reports.pdf import LABELS, ReportContent, build_pdf
    from medvlab.services.segmentation import overlay
    from medvlab.vlm.prompting import detect_language, strip_disclaimer

    index = image.n_slices // 2 if slice_index is None else slice_index
    lang = language or detect_language(" ".join(q for q, _ in qa))
    # the report prints the disclaimer itself; drop the copy each streamed answer ends with
    qa = [(q, strip_disclaimer(a)) for q, a in qa]
    picture = to_pil(render_slice(image, index, window))
    t = LABELS.get(lang, LABELS["en"])
    where = t["slice"].format(n=index + 1, total=image.n_slices)
    caption = f"{image.modality} · {where} · {t['window']} {window or t['auto']}"
    pictures = [(picture, caption)]
    if segmentation is not None:
        volumes_ml = volumes_ml or segmentation.volumes_ml
        areas = (segmentation.labels > 0).sum(axis=(1, 2))
        best = int(areas.argmax())
        drawn = to_pil(overlay(image, segmentation, best, window))
        names = ", ".join(segmentation.names)
        where = t["slice"].format(n=best + 1, total=image.n_slices)
        pictures.append((drawn, f"{t['segmentation']} ({names}) · {where}"))
    s = image.summary()
    content = ReportContent(
        model_id=lab.model_id,
        language=lang,
        pictures=[*pictures, *heatmaps],
        qa=list(qa),
        structured=structured,
        citations=[h.citation() for h in citations],
        volumes_ml=volumes_ml,
        adapter=lab.adapter,
        image_summary=f"{s['format']} {s['modality']} {'x'.join(map(str, s['shape']))}, "
        f"{t['spacing']} {', '.join(f'{v:g}' for v in s['spacing_mm'])} mm",
    )
    return build_pdf(content)
