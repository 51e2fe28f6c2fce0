"""Knowledge base of prior reports: add, list, search, remove one, clear."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from medvlab.errors import ConfigError
from medvlab.server.deps import LabDep
from medvlab.server.schemas import SnippetsRequest

router = APIRouter(prefix="/v1", tags=["lab"])


@router.post("/kb/snippets")
def kb_add(body: SnippetsRequest, lab: LabDep) -> dict[str, Any]:
    """Add prior-report snippets to the knowledge base; a text already stored keeps its one copy and id."""
    before = lab.kb_count()
    ids = lab.kb_add_texts([(s.title, s.text, s.source) for s in body.snippets])
    total = lab.kb_count()
    return {"added": total - before, "ids": ids, "total": total}


@router.get("/kb/snippets")
def kb_list(
    lab: LabDep,
    page: int = Query(1, ge=1),
    per_page: int = Query(20, ge=1, le=200),
    contains: str = "",
) -> dict[str, Any]:
    """One page of stored snippets, oldest first (``contains`` filters by title/text/source)."""
    return lab.kb_list(page, per_page, contains)


@router.delete("/kb/snippets/{snippet_id}")
def kb_remove(snippet_id: int, lab: LabDep) -> dict[str, Any]:
    """Remove one snippet; 404 when there is no snippet with that id."""
    return {"removed": lab.kb_remove(snippet_id), "total": lab.kb_count()}


@router.delete("/kb/snippets")
def kb_clear(lab: LabDep, confirm: bool = False) -> dict[str, Any]:
    """Remove every snippet; needs ``?confirm=true``."""
    if not confirm:
        raise ConfigError(
            "Clearing removes every snippet of the knowledge base and cannot be undone.",
            "Send DELETE /v1/kb/snippets?confirm=true.",
        )
    return {"removed": lab.kb_clear(), "total": 0}


@router.get("/kb/search")
def kb_search(q: str, lab: LabDep, k: int = 5) -> dict[str, Any]:
    """The knowledge-base snippets closest to ``q`` (Chinese or English), with citations."""
    hits = lab.kb_search(q, max(1, min(k, 50)))
    return {"query": q, "hits": [h.as_dict() for h in hits]}
