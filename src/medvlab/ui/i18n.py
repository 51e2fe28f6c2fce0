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

from medvlab.ui.texts import TEXT

__all__ = ["LANGS", "TEXT", "Texts", "language_of", "texts_of", "translate"]

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
        self.dynamic: dict[Block, Callable[[str], Any]] = {}

    def add(self, cls: Callable[..., B], props: Props, **kwargs: Any) -> B:
        """``cls(**kwargs)`` with its text properties filled in from ``props``, registered for relabelling."""
        return self.register(cls(**translate(props, self.language), **kwargs), props)

    def register(self, block: B, props: Props) -> B:
        translate(props, self.language)  # every key must exist
        self.keyed[block] = dict(props)
        return block

    def computed(self, block: B, value: Callable[[str], Any]) -> B:
        """A component whose value is computed for a language (the model status line, a picture)."""
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
        for b, value in self.dynamic.items():  # a block may have both: translated properties and a value
            out[b] = {**out.get(b, {}), **gr.update(value=value(language))}
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
