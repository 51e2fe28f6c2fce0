"""LoRA adapters on the served model: which one is active, swap, back to the base model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from medvlab.server.deps import LabDep
from medvlab.server.schemas import AdapterRequest

router = APIRouter(prefix="/v1", tags=["lab"])


@router.get("/adapters")
def adapters(lab: LabDep) -> dict[str, Any]:
    return {"model": lab.model_id, "adapter": lab.adapter}


@router.post("/adapters")
def set_adapter(body: AdapterRequest, lab: LabDep) -> dict[str, Any]:
    """Hot-swap: apply an adapter to the served model without a restart."""
    return {"model": lab.model_id, "adapter": lab.set_adapter(body.path)}


@router.delete("/adapters")
def clear_adapter(lab: LabDep) -> dict[str, Any]:
    """Serve the base model again."""
    return {"model": lab.model_id, "adapter": lab.set_adapter(None)}
