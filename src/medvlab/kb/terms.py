"""The Chinese <-> English radiology term table (``kb/terms.tsv``) and query/snippet expansion with it.

A text that mentions a term (a Chinese term as a substring, an English one as whole words, plural allowed)
is expanded with every synonym of that row in both languages, so 胸腔积液 and "pleural effusion" share
tokens in the BM25 index and a Chinese query has an English form for the (English-only) sentence model.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medvlab.errors import KnowledgeBaseError

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class TermRow:
    """One concept: its Chinese and English synonyms."""

    zh: tuple[str, ...]
    en: tuple[str, ...]


@dataclass(frozen=True)
class TermTable:
    rows: tuple[TermRow, ...]

    @functools.cached_property
    def _en_patterns(self) -> list[re.Pattern[str]]:
        return [
            re.compile(r"(?<![a-z])(?:" + "|".join(re.escape(t) for t in row.en) + r")(?:s|es)?(?![a-z])")
            for row in self.rows
        ]

    def matches(self, text: str) -> list[TermRow]:
        """The rows whose Chinese or English term occurs in ``text``."""
        lowered = text.lower()
        has_cjk = bool(_CJK.search(text))
        return [
            row
            for row, pattern in zip(self.rows, self._en_patterns, strict=True)
            if (has_cjk and any(z in text for z in row.zh)) or pattern.search(lowered)
        ]

    def expand(self, text: str) -> str:
        """Every synonym (both languages) of the terms in ``text``, space separated ('' if none)."""
        return " ".join(t for row in self.matches(text) for t in (*row.zh, *row.en))

    def english(self, text: str) -> str:
        """The English synonyms of the terms in ``text`` (the sentence model's view of a Chinese text)."""
        return " ".join(t for row in self.matches(text) for t in row.en)


def parse_terms(text: str, source: str = "terms.tsv") -> TermTable:
    """A table from ``zh|zh2<TAB>en|en2`` lines (``#`` comments and blank lines skipped)."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise KnowledgeBaseError(
                f"Line {n} of '{source}' is not 'chinese<TAB>english'.",
                "Write one concept per line: Chinese synonyms joined by |, a tab, English ones joined by |.",
            )
        zh = tuple(t.strip() for t in parts[0].split("|") if t.strip())
        en = tuple(t.strip().lower() for t in parts[1].split("|") if t.strip())
        rows.append(TermRow(zh, en))
    return TermTable(tuple(rows))


@functools.cache
def default_terms() -> TermTable:
    """The table shipped with medvlab."""
    return parse_terms(resources.files("medvlab.kb").joinpath("terms.tsv").read_text(encoding="utf-8"))


def load_terms(path: Path) -> TermTable:
    return parse_terms(path.read_text(encoding="utf-8"), path.name)
