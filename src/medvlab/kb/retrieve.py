"""Retrieval over prior reports: BM25 for Chinese and English, fused with English sentence embeddings.

Tokens for BM25: lower-cased Latin words and numbers, plus CJK character bigrams (a lone CJK character
is kept as it is). Unigrams are left out on purpose: with them 胸腔积液 matched 腔隙性脑梗死 through 腔 and
a nodule report through 胸, and those outranked the effusion report. Queries and snippets are expanded
with the bilingual term table (:mod:`medvlab.kb.terms`), so each language finds the other's reports.

The sentence model (all-MiniLM-L6-v2, :mod:`medvlab.kb.embed`) is English only: English snippets are
embedded as written, Chinese ones (and Chinese queries) by the English terms the table finds in them.
The two rankings are fused by reciprocal rank fusion (k=60).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medvlab.kb.store import Snippet, SnippetStore
from medvlab.kb.terms import TermTable, default_terms
from medvlab.store.db import make_engine
from medvlab.vlm.prompting import detect_language

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
RRF_K = 60
MIN_SIMILARITY = 0.2
"""Cosine similarity below which the sentence model's opinion is ignored."""


def tokenize(text: str) -> list[str]:
    """Latin words + CJK character bigrams (a one-character CJK run stays a unigram)."""
    lowered = text.lower()
    tokens = _WORD.findall(lowered)
    for run in _CJK_RUN.findall(lowered):
        tokens.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
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
            "id": self.snippet.id,
            "title": self.snippet.title,
            "source": self.snippet.source,
            "text": self.snippet.text,
        }


class KnowledgeBase:
    """A store plus lazily built indexes, rebuilt when the store changes.

    The public operations (used by the lab's services and by PACS report import) are :meth:`add`,
    :meth:`add_checked`, :meth:`page`, :meth:`get`, :meth:`remove`, :meth:`clear` and :meth:`search`.
    """

    def __init__(
        self,
        url: str,
        use_embeddings: bool = True,
        model_dir: Path | None = None,
        terms: TermTable | None = None,
    ) -> None:
        self.store = SnippetStore(make_engine(url))
        self.use_embeddings = use_embeddings
        self.model_dir = model_dir
        """Where the ONNX copy of the sentence model is kept (None: ``<cache>/models``)."""
        self.terms = terms or default_terms()
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._snippets: list[Snippet] = []
        self._bm25: Any = None
        self._vectors: np.ndarray | None = None
        self._has_vector: np.ndarray | None = None

    @classmethod
    def at(cls, path: Path, use_embeddings: bool = True, model_dir: Path | None = None) -> KnowledgeBase:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}", use_embeddings, model_dir)

    # -- management ---------------------------------------------------------------------------------
    def add(self, snippets: Sequence[Snippet]) -> list[int]:
        """Store snippets; a text already stored keeps its one copy. -> one id per snippet given."""
        return self.store.add(snippets)

    def add_checked(self, snippets: Sequence[Snippet]) -> tuple[list[int], int]:
        """Like :meth:`add`; -> (one id per snippet given, how many were new)."""
        return self.store.add_checked(snippets)

    def page(self, offset: int = 0, limit: int = 20, query: str = "") -> tuple[list[Snippet], int]:
        """A page of snippets, oldest first (``query`` filters by substring); -> (page, total)."""
        return self.store.page(offset, limit, query)

    def get(self, snippet_id: int) -> Snippet:
        return self.store.get(snippet_id)

    def remove(self, snippet_id: int) -> Snippet:
        """Remove one snippet by id (NotFoundError if there is none); -> the removed snippet."""
        return self.store.remove(snippet_id)

    def clear(self) -> int:
        """Remove every snippet; -> how many there were."""
        return self.store.clear()

    # -- search -------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        version = self.store.version()
        if version == self._version:
            return
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        self._snippets = self.store.all()
        corpus = [tokenize(self._index_text(s)) for s in self._snippets]
        self._bm25 = bm25s.BM25()
        if corpus:
            self._bm25.index(corpus, show_progress=False)
        self._vectors = None
        self._version = version

    def _index_text(self, s: Snippet) -> str:
        body = f"{s.title}\n{s.text}"
        return f"{body}\n{self.terms.expand(body)}"

    def _embedding_text(self, s: Snippet) -> str:
        """What the English sentence model reads for a snippet ('' when it has nothing to read)."""
        if s.language == "zh":
            return self.terms.english(f"{s.title}\n{s.text}")
        return f"{s.title}. {s.text}"

    @property
    def _vector_model(self) -> str:
        """Cache key of the vectors: model name + digest of the term table (it shapes Chinese texts)."""
        from medvlab.kb.embed import MODEL_NAME

        digest = hashlib.sha256(repr(self.terms.rows).encode()).hexdigest()[:8]
        return f"{MODEL_NAME}/{digest}"

    def _doc_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, which snippets have one), from the store's cache; missing ones are embedded now."""
        if self._vectors is None or self._has_vector is None:
            from medvlab.kb.embed import embedder

            texts = [self._embedding_text(s) for s in self._snippets]
            keys = [s.key for s in self._snippets]
            model = self._vector_model
            cached = self.store.vectors(keys, model)
            todo = [i for i, (k, t) in enumerate(zip(keys, texts, strict=True)) if t and k not in cached]
            if todo:
                fresh = embedder(self.model_dir).encode([texts[i] for i in todo])
                new = {keys[i]: v for i, v in zip(todo, fresh, strict=True)}
                self.store.save_vectors(new, model)
                cached.update(new)
            self._has_vector = np.array([bool(t) for t in texts])
            self._vectors = np.stack([cached.get(k, np.zeros(384, np.float32)) for k in keys])
        return self._vectors, self._has_vector

    def _embedding_ranking(self, query: str) -> list[int]:
        from medvlab.kb.embed import embedder

        text = query if detect_language(query) == "en" else self.terms.english(query)
        if not text:
            return []
        vectors, has = self._doc_vectors()
        sims = vectors @ embedder(self.model_dir).encode([text])[0]
        return [int(i) for i in np.argsort(-sims) if has[i] and sims[i] > MIN_SIMILARITY]

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """Top-``k`` snippets for ``query`` (Chinese or English)."""
        with self._lock:
            self._refresh()
            if not self._snippets or not query.strip():
                return []
            rankings: dict[str, list[int]] = {}
            q_tokens = tokenize(f"{query}\n{self.terms.expand(query)}")
            if q_tokens:
                n = len(self._snippets)
                docs, scores = self._bm25.retrieve([q_tokens], k=n, show_progress=False)
                rankings["bm25"] = [int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
            if self.use_embeddings:
                try:
                    rankings["embedding"] = self._embedding_ranking(query)
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
