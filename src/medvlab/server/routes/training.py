"""Training from the lab: one SFT / DPO / GRPO job at a time (a separate process), its status, metrics and
log, stop and resume, a DPO round from the clinicians' ratings, and base vs adapter VQA evaluation."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from medvlab.server.deps import LabDep
from medvlab.services import training

router = APIRouter(prefix="/v1/train", tags=["training"])


class TrainJobRequest(BaseModel):
    kind: Literal["sft", "dpo", "grpo"] = "sft"
    data: str = Field(..., description="A JSONL file under MEDVLAB_ALLOWED_PATHS.")
    options: dict[str, Any] = Field(default_factory=dict, description="Config fields, e.g. max_steps.")


class FeedbackRoundRequest(BaseModel):
    options: dict[str, Any] = Field(default_factory=dict)


class ResumeRequest(BaseModel):
    max_steps: int = Field(..., ge=1, description="Train on up to this many steps in total.")


class EvalRequest(BaseModel):
    data: str = Field(..., description="VQA records (JSONL / JSON list) under MEDVLAB_ALLOWED_PATHS.")
    adapter: str | None = Field(None, description="Adapter folder (default: the current job's).")
    max_new_tokens: int = Field(64, ge=1, le=1024)


@router.post("/jobs")
def start_job(body: TrainJobRequest, lab: LabDep) -> dict[str, Any]:
    """Launch ``medvlab train KIND``; 409 while another job runs."""
    return training.start(lab, body.kind, body.data, body.options)


@router.get("/jobs/current")
def current_job(lab: LabDep, log_lines: int = 40) -> dict[str, Any]:
    """State (none / running / finished / failed / stopped), steps, metrics rows, log tail, adapter."""
    return training.status(lab, max(1, min(log_lines, 1000)))


@router.post("/jobs/current/stop")
def stop_job(lab: LabDep) -> dict[str, Any]:
    return training.stop(lab)


@router.post("/jobs/current/resume")
def resume_job(body: ResumeRequest, lab: LabDep) -> dict[str, Any]:
    return training.resume(lab, body.max_steps)


@router.post("/dpo-from-feedback")
def dpo_from_feedback(body: FeedbackRoundRequest, lab: LabDep) -> dict[str, Any]:
    """Export the rated answers as preference pairs and launch ``train dpo`` on them."""
    return training.dpo_from_feedback(lab, body.options)


@router.post("/eval")
def evaluate(body: EvalRequest, lab: LabDep) -> dict[str, Any]:
    """Base model and adapter scored on VQA records (closed accuracy, open F1 / recall)."""
    return training.evaluate(lab, body.data, body.adapter, max_new_tokens=body.max_new_tokens)
