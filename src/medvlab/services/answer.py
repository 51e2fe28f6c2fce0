"""Answering: one ``answer()`` for plain, structured, knowledge-grounded and volume-grounded answers, which
the CLI, the API and the web UI all call; plus attention maps of an answer and short evaluation answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvlab.config import GenerationOptions, PromptOptions
from medvlab.errors import RequestError
from medvlab.vlm.generation import StreamStats
from medvlab.vlm.prompting import (
    DISCLAIMERS,
    Turn,
    build_messages,
    image_parts,
    measurements_footer,
    measurements_text,
    resolve_language,
    strip_disclaimer,
    with_disclaimer,
)

if TYPE_CHECKING:
    from PIL import Image

    from medvlab.kb.retrieve import Hit
    from medvlab.services.lab import Lab


@dataclass
class Answer:
    """What ``answer()`` gives: streamed text, or (structured) a JSON object, and what grounded it."""

    chunks: Iterator[str] | None = None
    """The answer's text as it streams (plain answers), ending with the disclaimer."""
    data: dict[str, Any] | None = None
    """The structured answer (when asked for), valid against the schema, with ``disclaimer``."""
    hits: list[Hit] = field(default_factory=list)
    """Knowledge-base snippets the answer was grounded in (listed after it as references)."""
    volumes_ml: dict[str, float] | None = None
    """Measured volumes the answer was given (listed after it)."""


def check_turns(turns: list[Turn]) -> None:
    if not turns or turns[-1].role != "user":
        raise RequestError(
            "The conversation must end with a user message.", "Add the question as the last message."
        )
    if not turns[-1].text.strip():
        raise RequestError("The question is empty.", "Type a question about the image.")


def first_volume(turns: list[Turn]) -> Any:
    volume = next((im for t in turns for im in t.images if im.is_volume and not im.is_rgb), None)
    if volume is None:
        raise RequestError(
            "Segmenting needs a 3-D volume among the images.",
            "Send a CT/MR series or a NIfTI file, or leave segmentation out.",
        )
    return volume


def answer(
    lab: Lab,
    turns: list[Turn],
    prompt: PromptOptions | None = None,
    generation: GenerationOptions | None = None,
    *,
    structured: bool = False,
    schema: dict[str, Any] | None = None,
    kb: int = 0,
    segment: bool = False,
    volumes_ml: Mapping[str, float] | None = None,
    stats: StreamStats | None = None,
    cancel: threading.Event | None = None,
) -> Answer:
    """The answer to the last user turn.

    ``structured`` (or a ``schema``) gives a JSON object; otherwise the text streams. ``kb`` grounds the
    answer in that many knowledge-base snippets; ``segment`` segments the first 3-D image and gives the
    model its measured volumes (or pass ``volumes_ml`` measured already). Validation, image rendering and
    model loading happen before this returns, so a face can report those errors before it streams.
    """
    check_turns(turns)
    if structured or schema is not None:
        data = structured_answer(lab, turns, prompt, generation, stats, schema=schema, cancel=cancel)
        return Answer(data=data)
    hits = lab.kb_search(turns[-1].text, kb) if kb else []
    volumes = dict(volumes_ml) if volumes_ml else None
    if segment and volumes is None:
        volumes = lab.segment(first_volume(turns)).volumes_ml
    chunks = chat(lab, turns, prompt, generation, stats, cancel, hits, volumes)
    return Answer(chunks=chunks, hits=hits, volumes_ml=volumes)


def chat(
    lab: Lab,
    turns: list[Turn],
    prompt: PromptOptions | None = None,
    generation: GenerationOptions | None = None,
    stats: StreamStats | None = None,
    cancel: threading.Event | None = None,
    grounding: Sequence[Hit] = (),
    measurements: Mapping[str, float] | None = None,
) -> Iterator[str]:
    """Stream the answer to the last user turn, ending with the disclaimer in the user's language.

    ``grounding`` (knowledge-base hits) is shown to the model before the question and listed as references
    after the answer; ``measurements`` (structure -> mL) likewise, so the answer can cite measured volumes.
    """
    check_turns(turns)
    prompt = prompt or lab.prompt_options()
    generation = generation or lab.generation_options()
    language = resolve_language(turns, prompt)
    if grounding:
        from medvlab.kb.retrieve import grounding_text

        turns = before_question(turns, grounding_text(grounding, language))
    if measurements:
        turns = before_question(turns, measurements_text(measurements, language, lab.settings.seg_model))
    chunks = lab.backend.stream(build_messages(turns, prompt), generation, stats, cancel)
    if grounding:
        from medvlab.kb.retrieve import references_text

        chunks = _then(chunks, references_text(grounding, language))
    if measurements:
        chunks = _then(chunks, measurements_footer(measurements, language, lab.settings.seg_model))
    return with_disclaimer(chunks, language)


def structured_answer(
    lab: Lab,
    turns: list[Turn],
    prompt: PromptOptions | None = None,
    generation: GenerationOptions | None = None,
    stats: StreamStats | None = None,
    max_chars: int = 400,
    schema: dict[str, Any] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """The answer as a JSON object valid against ``schema`` (default: the findings schema).

    Decoding is constrained, so the object always parses; ``disclaimer`` is added to it.
    """
    from medvlab.vlm import structured as st

    lab.require("structured_output")
    check_turns(turns)
    prompt = prompt or lab.prompt_options()
    language = resolve_language(turns, prompt)
    schema = st.check_schema(schema) if schema is not None else st.schema_for(max_chars)
    generation = replace(generation or lab.generation_options(), json_schema=schema)
    last = turns[-1]
    asked = [*turns[:-1], Turn("user", last.text + st.instruction(language), last.images)]
    text = "".join(lab.backend.stream(build_messages(asked, prompt), generation, stats, cancel))
    data = st.parse(text, schema)
    data["disclaimer"] = DISCLAIMERS[language]
    return data


@dataclass(frozen=True)
class AttentionMap:
    """The attention of an answer over one picture the model saw."""

    picture: Image.Image
    """The picture (upscaled for display) with the heatmap drawn over it."""
    grid: Any
    """The g x g attention grid (numpy), to draw again over the viewer's own rendering."""
    slice_index: int
    """0-based slice of the volume the picture is (0 for a 2-D picture)."""
    n_slices: int
    """Slices in that volume (1 for a 2-D picture): labels read "slice 91/181" as the viewer does."""

    @property
    def reached(self) -> bool:
        """False when no attention reached this picture (e.g. beyond every sliding-window layer's reach)."""
        return bool((self.grid > 0).any())

    @property
    def label(self) -> str:
        n, total = self.slice_index + 1, self.n_slices
        text = f"attention · slice {n}/{total}" if total > 1 else "attention"
        return text if self.reached else f"{text} (none reached it)"


def attention_maps(
    lab: Lab,
    turns: list[Turn],
    answer_text: str,
    prompt: PromptOptions | None = None,
    span: tuple[int, int] | None = None,
) -> list[AttentionMap]:
    """Attention of ``answer_text`` over every picture of the conversation, each with its volume slice."""
    from medvlab.vlm.explain import heatmap_images

    lab.require("attention_maps")
    check_turns(turns)
    prompt = prompt or lab.prompt_options()
    messages = build_messages(turns, prompt)
    grids = lab.backend.attention_grids(messages, strip_disclaimer(answer_text) or answer_text, span)
    parts = [(p, img.n_slices) for t in turns for img in t.images for p in image_parts(img, prompt)]
    pictures = heatmap_images([p.image.resize(display_size(p.image)) for p, _ in parts], grids)
    return [
        AttentionMap(pic, grid, part.slice_index, n)
        for pic, grid, (part, n) in zip(pictures, grids, parts, strict=True)
    ]


def explain(
    lab: Lab,
    turns: list[Turn],
    answer_text: str,
    prompt: PromptOptions | None = None,
    span: tuple[int, int] | None = None,
) -> list[tuple[Image.Image, str]]:
    """Attention heatmaps of ``answer_text`` over every picture of the first user turn, with labels."""
    return [(m.picture, m.label) for m in attention_maps(lab, turns, answer_text, prompt, span)]


def vqa_answer(lab: Lab, image: str | Path, question: str, closed: bool, max_new_tokens: int = 64) -> str:
    """A short answer for evaluation: greedy, no disclaimer, yes/no requested for closed questions."""
    from medvlab.train.evaluate import CLOSED_HINT
    from medvlab.vlm.prompting import detect_language

    hint = CLOSED_HINT[detect_language(question)] if closed else ""
    messages = build_messages([Turn("user", question + hint, [lab.load_image(image)])], lab.prompt_options())
    options = GenerationOptions(max_new_tokens=max_new_tokens)
    return "".join(lab.backend.stream(messages, options)).strip()


def before_question(turns: list[Turn], text: str) -> list[Turn]:
    """The turns with ``text`` (retrieved snippets, measurements) put before the last user question."""
    last = turns[-1]
    return [*turns[:-1], Turn("user", text + last.text, last.images)]


def _then(chunks: Iterator[str], tail: str) -> Iterator[str]:
    yield from chunks
    yield tail


def display_size(picture: Image.Image, longest: int = 512) -> tuple[int, int]:
    """Heatmaps are drawn on an upscaled copy so the grid reads well in reports and the UI."""
    w, h = picture.size
    scale = longest / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))
