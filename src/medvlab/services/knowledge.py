"""The knowledge base of prior reports in the lab: add files or texts, list, remove, clear, search.

Every face (CLI ``medvlab kb``, REST ``/v1/kb``, the UI's knowledge tab) calls these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvlab.errors import ConfigError, KnowledgeBaseError

if TYPE_CHECKING:
    from medvlab.kb.retrieve import Hit, KnowledgeBase
    from medvlab.kb.store import Snippet

MAX_PAGE = 200
"""Largest page a listing returns."""


def open_kb(url: str | None, cache_dir: Path) -> KnowledgeBase:
    from medvlab.kb.retrieve import KnowledgeBase

    models = cache_dir / "models"
    return (
        KnowledgeBase(url, model_dir=models)
        if url
        else KnowledgeBase.at(cache_dir / "kb.sqlite", model_dir=models)
    )


@dataclass(frozen=True)
class Added:
    """What an add did: how many snippets were read, how many were new, the knowledge base's size now."""

    read: int
    added: int
    total: int

    @property
    def duplicates(self) -> int:
        return self.read - self.added


def add_files_checked(kb: KnowledgeBase, paths: Sequence[str | Path]) -> Added:
    """Add report snippets from files/folders; texts already stored are not stored again."""
    from medvlab.kb.ingest import read_snippets

    snippets = read_snippets([Path(p) for p in paths])
    if not snippets:
        raise KnowledgeBaseError(
            "No report snippets were found in the given files.", "Add .txt/.md/.json/.csv files."
        )
    _, new = kb.add_checked(snippets)
    return Added(len(snippets), new, kb.store.count())


def add_files(kb: KnowledgeBase, paths: Sequence[str | Path]) -> int:
    """Add report snippets from files/folders; returns how many were new."""
    return add_files_checked(kb, paths).added


def add_texts(kb: KnowledgeBase, items: Sequence[tuple[str, str, str]]) -> list[int]:
    """Add (title, text, source) snippets; returns their ids (the existing id for a text already stored)."""
    from medvlab.kb.store import Snippet
    from medvlab.vlm.prompting import detect_language

    return kb.add([Snippet(t, text, src, detect_language(text)) for t, text, src in items])


def list_snippets(
    kb: KnowledgeBase, page: int = 1, per_page: int = 20, query: str = ""
) -> tuple[list[Snippet], int]:
    """Page ``page`` (1-based) of ``per_page`` snippets, oldest first; -> (snippets, total matching)."""
    if page < 1 or not 1 <= per_page <= MAX_PAGE:
        raise ConfigError(
            f"Page {page} of {per_page} snippets is not a page medvlab can list.",
            f"Use page >= 1 and 1 <= per_page <= {MAX_PAGE}.",
        )
    return kb.page((page - 1) * per_page, per_page, query)


def listing(kb: KnowledgeBase, page: int = 1, per_page: int = 20, query: str = "") -> dict[str, Any]:
    """A page as JSON: ``{"page", "per_page", "pages", "total", "snippets": [...]}``."""
    snippets, total = list_snippets(kb, page, per_page, query)
    return {
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-total // per_page)),
        "total": total,
        "snippets": [s.as_dict() for s in snippets],
    }


def get(kb: KnowledgeBase, snippet_id: int) -> Snippet:
    return kb.get(snippet_id)


def remove(kb: KnowledgeBase, snippet_id: int) -> Snippet:
    """Remove one snippet; NotFoundError (404) names the id when there is none."""
    return kb.remove(snippet_id)


def clear(kb: KnowledgeBase) -> int:
    """Remove every snippet; -> how many were removed."""
    return kb.clear()


def search(kb: KnowledgeBase, query: str, k: int = 5) -> list[Hit]:
    return kb.search(query, k)
