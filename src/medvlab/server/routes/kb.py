"""Knowledge base of prior reports: add snippets, search them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medvlab.server.deps import LabDep
from medvlab.server.schemas import SnippetsRequest

router = APIRouter(prefix="/v1", tags=["lab"])


@router.post("/kb/snippets")
def kb_add(body: SnippetsRequest, lab: LabDep) -> dict[str, Any]:
    """Add prior-report snippets to the knowledge base."""
    ids = lab.kb_add_texts([(s.title, s.text, s.source) for s in body.snippets])
    return {"added": len(ids), "ids": ids, "total": lab.kb_count()}


@router.get("/kb/search")
def kb_search(q: str, lab: LabDep, k: int = 5) -> dict[str, Any]:
    """The knowledge-base snippets closest to ``q`` (Chinese or English), with citations."""
    hits = lab.kb_search(q, max(1, min(k, 50)))
    return {"query": q, "hits": [h.as_dict() for h in hits]}
