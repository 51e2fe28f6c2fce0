"""Knowledge base of prior reports: SQLite store, bilingual BM25 + English embeddings, cited retrieval."""

from medvlab.kb.ingest import read_snippets
from medvlab.kb.retrieve import Hit, KnowledgeBase

__all__ = ["Hit", "KnowledgeBase", "read_snippets"]
