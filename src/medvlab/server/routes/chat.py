"""OpenAI-compatible routes: ``/v1/models`` and ``/v1/chat/completions`` (JSON or SSE streaming)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from medvlab.errors import MedvlabError, RequestError
from medvlab.server.deps import Admitted, LabDep
from medvlab.server.errors import error_payload
from medvlab.server.schemas import ChatCompletionRequest, ImagePart
from medvlab.services import Lab
from medvlab.services.adapters import pick
from medvlab.vlm.generation import StreamStats
from medvlab.vlm.prompting import Turn

router = APIRouter(prefix="/v1", tags=["openai"])
STARTED = int(time.time())
SAMPLING_EPS = 1e-5
"""Temperatures below this decode greedily (as vLLM does): dividing logits by 1e-300 overflows."""


def served_names(lab: Lab) -> set[str]:
    """Names a request may use for the served model: its id, its folder's name, or 'medvlab'."""
    return {lab.model_id, Path(lab.model_id).name, "medvlab"}


@router.get("/models")
def list_models(lab: LabDep) -> dict[str, Any]:
    adapters = [  # as vLLM lists its LoRA modules: the adapter's name, with the base model as parent
        {"id": name, "object": "model", "created": STARTED, "owned_by": "medvlab", "parent": lab.model_id}
        for name in lab.adapters()
    ]
    return {
        "object": "list",
        "data": [
            {"id": lab.model_id, "object": "model", "created": STARTED, "owned_by": "medvlab"},
            *adapters,
        ],
    }


def to_turns(lab: Lab, body: ChatCompletionRequest) -> tuple[list[Turn], str | None]:
    """OpenAI messages -> medvlab turns (images loaded and checked) and an optional system prompt."""
    system: list[str] = []
    turns: list[Turn] = []
    for msg in body.messages:
        parts = msg.content if isinstance(msg.content, list) else [msg.content or ""]
        texts = [
            p if isinstance(p, str) else getattr(p, "text", "") for p in parts if not isinstance(p, ImagePart)
        ]
        text = "\n".join(t for t in texts if t)
        if msg.role == "system":
            system.append(text)
            continue
        images = [lab.load_image_reference(p.image_url.url) for p in parts if isinstance(p, ImagePart)]
        if images and msg.role != "user":
            raise RequestError("Only user messages may carry images.", "Move the image into a user message.")
        turns.append(Turn(msg.role, text, images))
    return turns, ("\n\n".join(system) or None)


@router.post("/chat/completions", response_model=None)
def chat_completions(
    body: ChatCompletionRequest, lab: LabDep, guard: Admitted
) -> JSONResponse | StreamingResponse:
    adapter = pick(lab.adapters(), served_names(lab), body.model)
    turns, system = to_turns(lab, body)
    prompt = lab.prompt_options(body.window, body.max_slices, body.language)
    if system:
        prompt = replace(prompt, system_prompt=system)
    sample = (body.temperature or 0.0) >= SAMPLING_EPS
    generation = lab.generation_options(
        max_new_tokens=body.max_completion_tokens or body.max_tokens,
        min_new_tokens=body.min_tokens or None,
        do_sample=sample,
        temperature=body.temperature if sample else None,
        top_p=body.top_p if sample else None,
        seed=body.seed,
        adapter=adapter,
    )
    stats = StreamStats()
    fmt = body.response_format
    structured = fmt is not None and fmt.type != "text"
    result = lab.answer(
        turns,
        prompt,
        generation,
        structured=structured,
        schema=fmt.json_schema.schema_ if structured and fmt and fmt.json_schema is not None else None,
        kb=body.kb,
        segment=body.segment,
        stats=stats,
        cancel=guard.cancel,
    )
    chunks = iter([json.dumps(result.data, ensure_ascii=False)]) if result.chunks is None else result.chunks
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        return StreamingResponse(
            guard.stream(_sse(chunks, stats, completion_id, created, adapter or lab.model_id)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    text = "".join(chunks)  # stops early when the client goes away (the guard's cancel is set)
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": adapter or lab.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": stats.finish_reason,
                }
            ],
            "usage": _usage(stats),
        }
    )


def _usage(stats: StreamStats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }


def _sse(chunks: Iterator[str], stats: StreamStats, cid: str, created: int, model: str) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``."""

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        for piece in chunks:
            yield event({"content": piece})
    except MedvlabError as exc:  # headers are sent: report in-band, as OpenAI does
        yield f"data: {json.dumps(error_payload(exc), ensure_ascii=False)}\n\n"
        return
    yield event({}, stats.finish_reason, usage=_usage(stats))
    yield "data: [DONE]\n\n"
