"""Training data: JSONL records validated line by line, images loaded and windowed as at inference.

SFT record (OpenAI / ms-swift style)::

    {"messages": [{"role": "user", "content": "<image>Is there a pneumothorax?"},
                  {"role": "assistant", "content": "No pneumothorax."}],
     "images": ["cxr/0001.dcm"]}

``content`` may also be a list of parts (``{"type": "image"}``, ``{"type": "text", "text": ...}``).
Each ``<image>`` placeholder (or image part) takes the next path of ``images`` (relative paths are relative
to the JSONL file); a DICOM series folder or NIfTI volume becomes its sampled slices, each followed by
``SLICE k``, exactly as :mod:`medvlab.vlm.prompting` shows them to the model at inference.

DPO record: ``{"prompt": <messages or question>, "chosen": <text>, "rejected": <text>, "images": [...]}``
(``messages`` may stand for ``prompt`` and ``rejected_response`` for ``rejected``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from medvlab.config import PromptOptions
from medvlab.errors import DataError, MedvlabError
from medvlab.imaging import load
from medvlab.vlm.prompting import SYSTEM_PROMPTS, ImagePart, detect_language, image_parts

IMAGE_TAG = re.compile(r"<image>")
ROLES = ("system", "user", "assistant")


@dataclass
class ImageCache:
    """Decoded + windowed pictures per (path, window, slices): each file is read once per run."""

    options: PromptOptions
    enabled: bool = True
    _store: dict[str, list[ImagePart]] = field(default_factory=dict)
    hits: int = 0

    def parts(self, path: Path) -> list[ImagePart]:
        key = str(path.resolve())
        if self.enabled and key in self._store:
            self.hits += 1
            return self._store[key]
        parts = image_parts(load(path), self.options)
        if self.enabled:
            self._store[key] = parts
        return parts


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; blank lines skipped; a bad line is named."""
    if not path.exists():
        raise DataError(f"The data file '{path}' does not exist.", "Check the --data path.")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"The data file '{path.name}' cannot be read ({exc}).", "Use a UTF-8 JSONL file."
        ) from exc
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path.name} line {n}: not valid JSON ({exc.msg}).", "Write one JSON object per line."
            ) from exc
        if not isinstance(rec, dict):
            raise DataError(
                f"{path.name} line {n}: expected a JSON object.", "Write one JSON object per line."
            )
        out.append((n, rec))
    if not out:
        raise DataError(f"'{path.name}' holds no records.", "Add at least one JSON line.")
    return out


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    """Message content -> list of {"type": "image"} / {"type": "text"} parts."""
    if isinstance(content, str):
        pieces = IMAGE_TAG.split(content)
        parts: list[dict[str, Any]] = []
        for i, piece in enumerate(pieces):
            if i:
                parts.append({"type": "image"})
            if piece.strip():
                parts.append({"type": "text", "text": piece.strip()})
        return parts
    if isinstance(content, list):
        parts = []
        for p in content:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind in ("image", "image_url"):
                parts.append({"type": "image"})
            elif kind == "text" and isinstance(p.get("text"), str):
                parts.append({"type": "text", "text": p["text"]})
            else:
                raise DataError(
                    f"{where}: content part {p!r} is not text or image.", 'Use {"type": "text", "text": ...}.'
                )
        return parts
    raise DataError(f"{where}: message content must be a string or a list of parts.", "See docs/training.md.")


def _messages(raw: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": _parts(raw, where)}]
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: 'messages' must be a non-empty list.", "See docs/training.md.")
    out = []
    for m in raw:
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DataError(f"{where}: every message needs a role of {', '.join(ROLES)}.", f"Got {m!r}.")
        out.append({"role": m["role"], "content": _parts(m.get("content"), where)})
    return out


def _resolve_images(rec: dict[str, Any], base: Path, where: str) -> list[Path]:
    images = rec.get("images") or []
    if isinstance(images, str):
        images = [images]
    paths = [Path(p) if Path(p).is_absolute() else base / p for p in images]
    for p in paths:
        if not p.exists():
            raise DataError(
                f"{where}: image '{p}' does not exist.",
                "Fix the path (relative paths start at the JSONL file).",
            )
    return paths


def _expand(
    messages: list[dict[str, Any]], paths: list[Path], cache: ImageCache, where: str
) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """Replace each image part by its rendered picture(s) (+ SLICE labels); add the system prompt."""
    n_tags = sum(1 for m in messages for p in m["content"] if p["type"] == "image")
    if n_tags != len(paths):
        raise DataError(
            f"{where}: {n_tags} <image> placeholder(s) but {len(paths)} image path(s).",
            "Put one <image> (or image part) in the messages for each path in 'images'.",
        )
    pictures: list[Image.Image] = []
    it = iter(paths)
    expanded = []
    for m in messages:
        content: list[dict[str, Any]] = []
        for p in m["content"]:
            if p["type"] != "image":
                content.append(p)
                continue
            path = next(it)
            try:
                parts = cache.parts(path)
            except MedvlabError as exc:
                raise DataError(f"{where}: {exc.problem}", exc.fix) from exc
            for part in parts:
                content.append({"type": "image"})
                pictures.append(part.image)
                if part.label:
                    content.append({"type": "text", "text": part.label})
        expanded.append({"role": m["role"], "content": content})
    if expanded[0]["role"] != "system":
        text = " ".join(p.get("text", "") for m in expanded for p in m["content"] if m["role"] == "user")
        expanded.insert(
            0,
            {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPTS[detect_language(text)]}]},
        )
    return expanded, pictures


def _check_alternation(messages: list[dict[str, Any]], where: str, must_end: str) -> None:
    roles = [m["role"] for m in messages if m["role"] != "system"]
    for i, role in enumerate(roles):
        want = "user" if i % 2 == 0 else "assistant"
        if role != want:
            raise DataError(
                f"{where}: roles must alternate user/assistant, found {roles}.", "Reorder the messages."
            )
    if not roles or roles[-1] != must_end:
        raise DataError(
            f"{where}: the conversation must end with a {must_end} message.", "Add it or remove extras."
        )


def load_sft(path: Path, cache: ImageCache) -> list[dict[str, Any]]:
    """Validated SFT records, ready for the collator: {"messages": [...], "images": [PIL, ...]}."""
    records = []
    for n, rec in read_jsonl(path):
        where = f"{path.name} line {n}"
        if "messages" not in rec:
            raise DataError(
                f"{where}: no 'messages'.", 'Give each line {"messages": [...], "images": [...]}.'
            )
        messages = _messages(rec["messages"], where)
        _check_alternation(messages, where, must_end="assistant")
        for m in messages:
            if m["role"] == "assistant" and any(p["type"] == "image" for p in m["content"]):
                raise DataError(
                    f"{where}: an assistant message holds an image.", "Only user messages carry images."
                )
        expanded, pictures = _expand(messages, _resolve_images(rec, path.parent, where), cache, where)
        records.append({"messages": expanded, "images": pictures})
    return records


def _answer(raw: Any, where: str, key: str) -> list[dict[str, Any]]:
    if isinstance(raw, str) and raw.strip():
        return [{"role": "assistant", "content": [{"type": "text", "text": raw.strip()}]}]
    if isinstance(raw, dict) and raw.get("role") == "assistant":
        return [{"role": "assistant", "content": _parts(raw.get("content"), where)}]
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(m, dict) and m.get("role") == "assistant" for m in raw)
    ):
        return [{"role": "assistant", "content": _parts(m.get("content"), where)} for m in raw]
    raise DataError(
        f"{where}: '{key}' must be a non-empty answer (text or assistant message).", "Fix the record."
    )


def load_dpo(path: Path, cache: ImageCache) -> list[dict[str, Any]]:
    """Validated preference records for TRL's DPOTrainer: prompt / chosen / rejected / images."""
    records = []
    for n, rec in read_jsonl(path):
        where = f"{path.name} line {n}"
        prompt_raw = rec.get("prompt", rec.get("messages"))
        rejected_raw = rec.get("rejected", rec.get("rejected_response"))
        if prompt_raw is None or "chosen" not in rec or rejected_raw is None:
            raise DataError(
                f"{where}: a preference needs 'prompt', 'chosen' and 'rejected'.", "Add the missing field(s)."
            )
        prompt = _messages(prompt_raw, where)
        _check_alternation(prompt, where, must_end="user")
        chosen, rejected = _answer(rec["chosen"], where, "chosen"), _answer(rejected_raw, where, "rejected")
        if chosen == rejected:
            raise DataError(
                f"{where}: 'chosen' and 'rejected' are the same.", "A preference needs two different answers."
            )
        expanded, pictures = _expand(prompt, _resolve_images(rec, path.parent, where), cache, where)
        records.append({"prompt": expanded, "chosen": chosen, "rejected": rejected, "images": pictures})
    return records
