"""Endpoints for API clients that belong to no panel: ``/ask`` (files + question -> streamed answer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from medvlab.services import Lab
from medvlab.ui.state import shown_errors
from medvlab.ui.uploads import checked_paths, forget


def ask(
    lab: Lab,
    files: Any,
    question: str,
    window: str = "auto",
    max_slices: float = 16,
    max_new_tokens: float = 128,
) -> Iterator[str]:
    """Stateless: the files (uploads, deleted once read) and a question -> the answer so far, growing."""
    with shown_errors():
        paths = checked_paths(files, lab.settings)
    if not paths:
        raise gr.Error("Send at least one image file.")
    with shown_errors():
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
    answer = ""
    for piece in chunks:
        answer += piece
        yield answer


def wire(lab: Lab) -> None:
    """``gr.api`` takes the endpoint's schema from its type hints, hence a typed adapter, not a partial."""

    def ask_endpoint(
        files: Any, question: str, window: str = "auto", max_slices: float = 16, max_new_tokens: float = 128
    ) -> Iterator[str]:
        """Stateless endpoint for API clients: files + question -> streamed answer text."""
        yield from ask(lab, files, question, window, max_slices, max_new_tokens)

    gr.api(ask_endpoint, api_name="ask")
