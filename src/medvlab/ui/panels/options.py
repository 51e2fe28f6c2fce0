"""Options (a closed accordion): how many slices of a volume the model sees, how long it may answer."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from medvlab.config import Settings
from medvlab.ui.i18n import Texts


@dataclass(frozen=True)
class Options:
    accordion: gr.Accordion
    max_slices: gr.Slider
    max_new_tokens: gr.Slider


def build(settings: Settings, texts: Texts) -> Options:
    """Starts at the lab's settings (capped at the sliders' ends)."""
    with texts.add(gr.Accordion, {"label": "advanced"}, open=False) as accordion:
        max_slices = texts.add(
            gr.Slider,
            {"label": "max_slices"},
            minimum=1,
            maximum=85,
            value=min(settings.max_slices, 85),
            step=1,
        )
        max_new_tokens = texts.add(
            gr.Slider,
            {"label": "max_new_tokens"},
            minimum=16,
            maximum=2048,
            value=min(settings.max_new_tokens, 2048),
            step=16,
        )
    return Options(accordion, max_slices, max_new_tokens)
