"""The knowledge base of prior reports in the lab: add files or texts, count, search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medvlab.errors import KnowledgeBaseError

if TYPE_CHECKING:
    from medvlab.kb.retrieve import Hit, KnowledgeBase


def open_kb(url: str | None, cache_dir: Path) -> KnowledgeBase:
    from medvlab.kb.retrieve import KnowledgeBase

    return KnowledgeBase(url) if url else KnowledgeBase.at(cache_dir / "kb.sqlite")


def add_files(kb: KnowledgeBase, paths: Sequence[str | Path]) -> int:
    """Add report snippets from files/folders; returns how many were added."""
    from medvlab.kb.ingest import read_snippets

    snippets = read_snippets([Path(p) for p in paths])
    if not snippets:
        raise KnowledgeBaseError(
            "No report snippets were found in the given files.", "Add .txt/.md/.json/.csv files."
        )
    return len(kb.add(snippets))


def add_texts(kb: KnowledgeBase, items: Sequence[tuple[str, str, str]]) -> list[int]:
    """Add (title, text, source) snippets; returns their ids."""
    from medvlab.kb.store import Snippet
    from medvlab.vlm.prompting import detect_language

    return kb.add([Snippet(t, text, src, detect_language(text)) for t, text, src in items])


def search(kb: KnowledgeBase, query: str, k: int = 5) -> list[Hit]:
    return kb.search(query, k)
