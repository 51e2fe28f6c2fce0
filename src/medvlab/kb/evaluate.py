"""Retrieval quality on a labelled set: recall@k and mean reciprocal rank (MRR), overall and per language.

Snippets file: JSONL of ``{"id", "title", "text"}``; queries file: JSONL of ``{"query", "expected"}`` where
``expected`` is a snippet id (or a list of ids, any of which counts). The snippets go into a fresh
temporary knowledge base, so the measurement never touches the user's own.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvlab.errors import KnowledgeBaseError
from medvlab.kb.retrieve import KnowledgeBase
from medvlab.kb.store import Snippet
from medvlab.vlm.prompting import detect_language


@dataclass
class RetrievalReport:
    k: int
    snippets: int
    queries: int
    recall: float
    mrr: float
    seconds_per_query: float
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    """Queries whose expected snippet was not in the top k: 'query -> expected (got ...)'."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "snippets": self.snippets,
            "queries": self.queries,
            f"recall@{self.k}": round(self.recall, 4),
            "mrr": round(self.mrr, 4),
            "ms_per_query": round(self.seconds_per_query * 1000, 2),
            "by_language": self.by_language,
            "misses": self.misses,
        }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise KnowledgeBaseError(f"Cannot read '{path}': {exc}", "Give a UTF-8 JSONL file.") from exc
    if not all(isinstance(r, dict) for r in rows):
        raise KnowledgeBaseError(
            f"'{path.name}' has a line that is not a JSON object.", "One object per line."
        )
    return rows


def evaluate(
    kb: KnowledgeBase, ids_by_text: dict[str, str], queries: list[dict[str, Any]], k: int = 3
) -> RetrievalReport:
    """Score ``kb`` on ``queries``; ``ids_by_text`` maps a snippet's text to its id in the labelled set."""
    ranks: list[tuple[str, int | None]] = []
    misses = []
    start = time.perf_counter()
    for q in queries:
        expected = q["expected"] if isinstance(q["expected"], list) else [q["expected"]]
        hits = kb.search(q["query"], k=max(k, 10))
        got = [ids_by_text.get(h.snippet.text, "?") for h in hits]
        rank = next((i + 1 for i, g in enumerate(got) if g in expected), None)
        ranks.append((detect_language(q["query"]), rank))
        if rank is None or rank > k:
            misses.append(f"{q['query']} -> {'/'.join(expected)} (got {', '.join(got[:k])})")
    elapsed = time.perf_counter() - start

    def score(rows: list[tuple[str, int | None]]) -> dict[str, float]:
        n = len(rows)
        return {
            "queries": n,
            "recall": sum(1 for _, r in rows if r is not None and r <= k) / n,
            "mrr": sum(1 / r for _, r in rows if r is not None) / n,
        }

    overall = score(ranks)
    langs = sorted({lang for lang, _ in ranks})
    return RetrievalReport(
        k=k,
        snippets=len(ids_by_text),
        queries=len(queries),
        recall=overall["recall"],
        mrr=overall["mrr"],
        seconds_per_query=elapsed / max(len(queries), 1),
        by_language={lang: score([r for r in ranks if r[0] == lang]) for lang in langs},
        misses=misses,
    )


def evaluate_files(snippets: Path, queries: Path, k: int = 3, use_embeddings: bool = True) -> RetrievalReport:
    """Load the labelled set into a temporary knowledge base and score it."""
    rows = _jsonl(snippets)
    qs = _jsonl(queries)
    if not rows or not qs:
        raise KnowledgeBaseError("The snippets or queries file is empty.", "Give at least one of each.")
    for q in qs:
        if "query" not in q or "expected" not in q:
            raise KnowledgeBaseError(f"Query {q} lacks 'query' or 'expected'.", "Give both fields.")
    ids_by_text = {str(r["text"]): str(r["id"]) for r in rows}
    with tempfile.TemporaryDirectory(prefix="medvlab-kb-eval-") as tmp:
        kb = KnowledgeBase.at(Path(tmp) / "kb.sqlite", use_embeddings)
        kb.add(
            [
                Snippet(
                    str(r.get("title") or r["id"]), str(r["text"]), snippets.name, detect_language(r["text"])
                )
                for r in rows
            ]
        )
        kb.search("warm up", 1)  # builds the indexes (and loads the sentence model) outside the timing
        report = evaluate(kb, ids_by_text, qs, k)
        kb.store.engine.dispose()
        return report
