"""Prompt records for ``train grpo`` and ``train sample``: the SFT format, reference answer optional.

::

    {"messages": [{"role": "user", "content": "<image>Is there a pneumothorax?"},
                  {"role": "assistant", "content": "No pneumothorax."}],
     "images": ["cxr/0001.dcm"], "laterality": "left"}

A final assistant message is the reference answer (rewards compare against it) and is not part of the
prompt; ``"reference"`` (or ms-swift's ``"solution"``) may give it instead, and ``"prompt"`` may stand for
``"messages"``. Images are validated, windowed and cached exactly as for SFT (:mod:`medvlab.train.data`).
Every other top-level field (``laterality`` above) is handed to the reward functions by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvlab.errors import DataError
from medvlab.train.data import ImageCache, _check_alternation, _expand, _messages, _resolve_images, read_jsonl

OWN_KEYS = ("messages", "prompt", "images", "reference", "solution")


def _text(message: dict[str, Any]) -> str:
    return " ".join(p["text"] for p in message["content"] if p["type"] == "text").strip()


def load_prompts(path: Path, cache: ImageCache) -> list[dict[str, Any]]:
    """Validated records: {"prompt": messages (system + user, image parts), "images": [PIL, ...],
    "fields": {"reference": str | None, "question": str, <extra fields>}, "source": <raw record>}."""
    records = []
    for n, rec in read_jsonl(path):
        where = f"{path.name} line {n}"
        raw = rec.get("messages", rec.get("prompt"))
        if raw is None:
            raise DataError(
                f"{where}: no 'messages' (or 'prompt').",
                'Give each line {"messages": [{"role": "user", "content": "<image>..."}], "images": [...]}.',
            )
        messages = _messages(raw, where)
        reference = rec.get("reference", rec.get("solution"))
        if messages[-1]["role"] == "assistant":
            last = messages.pop()
            if reference is None:
                reference = _text(last)
        if reference is not None and not isinstance(reference, str):
            raise DataError(f"{where}: 'reference' must be text.", "Write the reference answer as a string.")
        _check_alternation(messages, where, must_end="user")
        images = _resolve_images(rec, path.parent, where)
        expanded, pictures = _expand(messages, images, cache, where)
        fields = {k: v for k, v in rec.items() if k not in OWN_KEYS}
        fields["reference"] = reference.strip() if reference and reference.strip() else None
        fields["question"] = _text(messages[-1])
        records.append(
            {
                "prompt": expanded,
                "images": pictures,
                "fields": fields,
                "image_paths": [str(p.resolve()) for p in images],
                "raw_prompt": messages,
            }
        )
    return records
