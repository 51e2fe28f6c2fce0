"""Images + a question -> chat messages for an image-text-to-text model, in Chinese or English.

Order follows MedGemma's CT/MRI notebooks: the system prompt, then for each user turn every image
(a volume contributes up to N evenly spaced slices in anatomical order, each followed by its label
``SLICE k`` with k the 1-based slice number in the volume), then the question last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from medvlab.config import Language, PromptOptions
from medvlab.imaging.types import MedImage
from medvlab.imaging.windows import default_window, parse_window, render_slice, sample_slices, to_pil

SYSTEM_PROMPTS: dict[str, str] = {
    "en": (
        "You are an expert radiologist assisting with research and teaching. Look carefully at the "
        "image(s) and answer the question. Structure the answer as: Findings (what is visible, with "
        "location and size when measurable); Impression (the most likely interpretation); Reasoning "
        "(the visual evidence behind it); Uncertainty (what these images cannot show). Slices of one "
        "volume are given in order, each followed by its label 'SLICE k'. Answer in English."
    ),
    "zh": (
        "你是一名放射科专家，协助科研与教学。请仔细观察图像并回答问题。按以下结构作答："
        "所见（可见的表现，能测量时给出位置和大小）；印象（最可能的解释）；依据（支持判断的影像证据）；"
        "不确定性（仅凭这些图像无法判断的内容）。同一容积的多个切面按顺序给出，每张之后标有“SLICE k”。"
        "请用中文回答。"
    ),
}

DISCLAIMERS: dict[str, str] = {
    "en": (
        "⚠️ For research and teaching only — not a medical diagnosis. Do not base clinical decisions on "
        "this answer; consult a qualified clinician."
    ),
    "zh": "⚠️ 仅供科研与教学使用，不构成医学诊断，不能作为临床决策依据；请咨询具备资质的医生。",
}

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def detect_language(text: str) -> Language:
    """``zh`` if the text contains any CJK character, else ``en``."""
    return "zh" if _CJK.search(text or "") else "en"


def disclaimer(language: Language) -> str:
    """The research-use disclaimer in ``language``."""
    return DISCLAIMERS[language]


@dataclass
class Turn:
    """One turn of a conversation; a user turn may carry images (shown before its text)."""

    role: Literal["user", "assistant"]
    text: str
    images: list[MedImage] = field(default_factory=list)


@dataclass(frozen=True)
class ImagePart:
    """One picture sent to the model and the label that follows it (``SLICE k``), if any."""

    image: Image.Image
    label: str | None
    slice_index: int


def image_parts(image: MedImage, options: PromptOptions) -> list[ImagePart]:
    """Window and sample a MedImage into the RGB pictures the model sees."""
    window = parse_window(options.window) if options.window else default_window(image, for_model=True)
    if not image.is_volume:
        return [ImagePart(to_pil(render_slice(image, 0, window)), None, 0)]
    picks = sample_slices(image.n_slices, options.max_slices)
    return [ImagePart(to_pil(render_slice(image, k, window)), f"SLICE {k + 1}", k) for k in picks]


def resolve_language(turns: Iterable[Turn], options: PromptOptions) -> Language:
    """The explicit option, else the language of the last user question."""
    if options.language:
        return options.language
    last_user = [t.text for t in turns if t.role == "user"]
    return detect_language(last_user[-1] if last_user else "")


def build_messages(turns: list[Turn], options: PromptOptions | None = None) -> list[dict[str, Any]]:
    """Conversation -> Hugging Face chat messages (``{"type": "image"|"text"}`` parts)."""
    options = options or PromptOptions()
    if not turns or turns[-1].role != "user":
        raise ValueError("a conversation must end with a user turn")
    language = resolve_language(turns, options)
    system = options.system_prompt or SYSTEM_PROMPTS[language]
    messages: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": system}]}]
    for turn in turns:
        content: list[dict[str, Any]] = []
        for img in turn.images:
            for part in image_parts(img, options):
                content.append({"type": "image", "image": part.image})
                if part.label:
                    content.append({"type": "text", "text": part.label})
        content.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": content})
    return messages


def strip_disclaimer(answer: str) -> str:
    """An answer without the disclaimer it was streamed with (for reports and explanations)."""
    for text in DISCLAIMERS.values():
        answer = answer.rstrip().removesuffix(text)
    return answer.rstrip()


def with_disclaimer(chunks: Iterable[str], language: Language) -> Iterator[str]:
    """Pass the streamed answer through, then end it with the disclaimer on its own paragraph."""
    yield from chunks
    yield "\n\n" + disclaimer(language)


def measurements_text(volumes_ml: Mapping[str, float], language: str, source: str = "segmentation") -> str:
    """The measured-volumes block put before the question, so the answer can cite real numbers."""
    if not volumes_ml:
        return ""
    values = ", ".join(f"{name} {ml:.1f} mL" for name, ml in volumes_ml.items())
    if language == "zh":
        return (
            f"以下体积由自动分割模型（{source}）测量，未经人工核实：{values}。"
            "回答时请在相关处引用这些测量值。\n\n"
        )
    return (
        f"Volumes measured by the automatic segmentation model ({source}), not verified by a person: "
        f"{values}. Cite these measurements where they are relevant.\n\n"
    )


def measurements_footer(volumes_ml: Mapping[str, float], language: str, source: str = "segmentation") -> str:
    """The measured volumes listed after a grounded answer (always shown, whatever the model wrote)."""
    if not volumes_ml:
        return ""
    head = (
        f"测量值（{source}，自动分割）"
        if language == "zh"
        else f"Measurements ({source}, automatic segmentation)"
    )
    return f"\n\n{head}:\n" + "\n".join(f"- {name}: {ml:.1f} mL" for name, ml in volumes_ml.items())
