"""What one browser session holds between events: typed values, and the ``gr.State`` slots that carry them.

The slots hold ``MedImage | None`` (the loaded image), :class:`~medvlab.ui.uploads.Uploads` ``| None`` (its
files, in memory), :class:`ChatSession` ``| None`` and ``Segmentation | None``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from medvlab.errors import MedvlabError


@dataclass(frozen=True)
class ChatSession:
    """What one browser session has asked and been shown, for explanations, reports and feedback."""

    qa: list[tuple[str, str]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    hits: list[Any] = field(default_factory=list)
    heatmaps: list[tuple[Any, str]] = field(default_factory=list)
    attention: dict[int, Any] = field(default_factory=dict)
    """0-based axial slice -> attention grid of the last explained answer (the viewer's overlay)."""
    slices: list[tuple[int, int, bool]] = field(default_factory=list)
    """(0-based slice, slices in the volume, attention reached it) of each of ``heatmaps``, for captions."""


@dataclass(frozen=True)
class States:
    """The per-session slots shared by the panels."""

    image: gr.State
    uploads: gr.State
    session: gr.State
    seg: gr.State


def build_states() -> States:
    return States(image=gr.State(None), uploads=gr.State(None), session=gr.State(None), seg=gr.State(None))


@contextmanager
def shown_errors() -> Iterator[None]:
    """A lab error inside becomes a ``gr.Error``: the page shows its message."""
    try:
        yield
    except MedvlabError as exc:
        raise gr.Error(str(exc)) from exc
