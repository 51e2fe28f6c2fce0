"""LoRA adapters on the served model: the active one (swap, back to the base model) and several served at
once by name, loaded and unloaded at run time (on the in-process engine, or on vLLM/SGLang/another
medvlab through their run-time adapter APIs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medvlab.server.deps import LabDep
from medvlab.server.schemas import AdapterRequest

router = APIRouter(prefix="/v1", tags=["lab"])


def _listing(lab: LabDep) -> dict[str, Any]:
    return {
        "model": lab.model_id,
        "adapter": lab.adapter,
        "adapters": [{"name": n, "path": p} for n, p in lab.adapters().items()],
    }


@router.get("/adapters")
def adapters(lab: LabDep) -> dict[str, Any]:
    return _listing(lab)


@router.post("/adapters")
def load_adapter(body: AdapterRequest, lab: LabDep) -> dict[str, Any]:
    """With ``name``: serve the adapter under that name beside the others (a request's ``model`` picks
    it). Without: hot-swap the active adapter, without a restart."""
    if body.name is None:
        lab.set_adapter(body.path)
    else:
        lab.load_adapter(body.name, body.path)
    return _listing(lab)


@router.delete("/adapters")
def unload_adapter(lab: LabDep, name: str | None = None) -> dict[str, Any]:
    """With ``?name=``: stop serving that named adapter. Without: serve the base model again."""
    if name is None:
        lab.set_adapter(None)
    else:
        lab.unload_adapter(name)
    return _listing(lab)
