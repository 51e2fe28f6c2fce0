"""Reading report snippets from .txt/.md, .json/.jsonl and .csv files."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medvlab.errors import ImageLoadError, KnowledgeBaseError
from medvlab.kb.store import Snippet
from medvlab.vlm.prompting import detect_language

SUFFIXES = (".txt", ".md", ".markdown", ".json", ".jsonl", ".csv")
MAX_CHARS = 1500
"""Longer texts are split at paragraph breaks into passages of at most about this many characters."""


def _split(text: str) -> list[str]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    current = ""
    for p in paragraphs:
        if current and len(current) + len(p) > MAX_CHARS:
            chunks.append(current)
            current = p
        else:
            current = f"{current}\n\n{p}" if current else p
    if current:
        chunks.append(current)
    return chunks


def _from_record(rec: Any, source: str, index: int) -> Snippet:
    if isinstance(rec, str):
        rec = {"text": rec}
    if not isinstance(rec, dict) or not str(rec.get("text") or rec.get("report") or "").strip():
        raise KnowledgeBaseError(
            f"Record {index + 1} of '{source}' has no text.",
            'Give each record a "text" (or "report") field, optionally a "title".',
        )
    text = str(rec.get("text") or rec.get("report")).strip()
    title = str(rec.get("title") or rec.get("id") or f"{Path(source).stem} #{index + 1}")
    return Snippet(title=title, text=text, source=source, language=detect_language(text))


def read_file(path: Path) -> list[Snippet]:
    """Snippets from one file; the error names the file (and record) when the content is unusable."""
    if not path.exists():
        raise ImageLoadError(f"'{path}' does not exist.", "Check the path.")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise KnowledgeBaseError(
            f"'{path.name}' is not a report file medvlab reads.", f"Use {', '.join(SUFFIXES)}."
        )
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KnowledgeBaseError(f"'{path.name}' is not UTF-8 text.", "Save it as UTF-8.") from exc
    source = path.name
    if suffix in (".txt", ".md", ".markdown"):
        parts = _split(raw)
        title = next((ln.lstrip("# ").strip() for ln in raw.splitlines() if ln.strip()), path.stem)
        return [
            Snippet(
                title if len(parts) == 1 else f"{title} ({i + 1}/{len(parts)})", p, source, detect_language(p)
            )
            for i, p in enumerate(parts)
        ]
    if suffix == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
        return [_from_record(r, source, i) for i, r in enumerate(rows)]
    try:
        if suffix == ".jsonl":
            records = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            data = json.loads(raw)
            records = data if isinstance(data, list) else data.get("reports", [data])
    except (json.JSONDecodeError, AttributeError) as exc:
        raise KnowledgeBaseError(f"'{path.name}' is not valid JSON: {exc}", "Fix the JSON syntax.") from exc
    return [_from_record(r, source, i) for i, r in enumerate(records)]


def read_snippets(paths: Sequence[Path] | Iterable[Path]) -> list[Snippet]:
    """Snippets from files and folders (folders are searched for the supported suffixes)."""
    out: list[Snippet] = []
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES) if p.is_dir() else [p]
        for f in files:
            out.extend(read_file(f))
    return out
