"""Batches for vision-language SFT: the processor builds inputs; labels mask what must not be learned.

Masked (label -100), as in MedGemma's fine-tuning recipe: padding, image soft tokens and the
<start_of_image>/<end_of_image> markers; with ``completion_only`` also everything outside the assistant
turns (system prompt, question, slice labels), so the loss is on the answer alone.
"""

from __future__ import annotations

from typing import Any

import torch

from medvlab.errors import DataError

IGNORE = -100


class VisionSFTCollator:
    def __init__(self, processor: Any, completion_only: bool = True, max_length: int | None = None) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.completion_only = completion_only
        self.max_length = max_length
        tok = self.tokenizer
        special = ("<image_soft_token>", "<start_of_image>", "<end_of_image>")
        self.masked_ids = {
            i
            for i in (tok.convert_tokens_to_ids(t) for t in special)
            if i is not None and i != tok.unk_token_id
        }
        image_id = getattr(tok, "image_token_id", None)
        if image_id is not None:
            self.masked_ids.add(int(image_id))
        self.turn_start = tok.convert_tokens_to_ids("<start_of_turn>")
        self.turn_end = tok.convert_tokens_to_ids("<end_of_turn>")
        self.model_ids = tok("model", add_special_tokens=False)["input_ids"]

    def __call__(self, examples: list[dict[str, Any]], truncate: bool = True) -> dict[str, torch.Tensor]:
        texts = [
            self.processor.apply_chat_template(
                ex["messages"], tokenize=False, add_generation_prompt=False
            ).strip()
            for ex in examples
        ]
        images = [ex["images"] for ex in examples]
        batch = self.processor(
            text=texts, images=images if any(images) else None, padding=True, return_tensors="pt"
        )
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE
        for tid in self.masked_ids:
            labels[labels == tid] = IGNORE
        if self.completion_only:
            labels[~self.assistant_mask(batch["input_ids"])] = IGNORE
        batch["labels"] = labels
        if truncate and self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            cut = batch["input_ids"][:, self.max_length :]
            if any(bool((cut == tid).any()) for tid in self.masked_ids):
                raise DataError(
                    f"A record is longer than max_length {self.max_length} and truncating it would cut "
                    "its image tokens.",
                    "Raise --max-length (or shorten the record); image tokens are never cut.",
                )
            for key in ("input_ids", "attention_mask", "labels", "token_type_ids"):
                if key in batch:
                    batch[key] = batch[key][:, : self.max_length]
        return dict(batch)

    def assistant_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """True on assistant-turn tokens (Gemma: after '<start_of_turn>model\\n', through '<end_of_turn>')."""
        mask = torch.zeros_like(input_ids, dtype=torch.bool)
        if self.turn_start is None or self.turn_end is None:
            mask[:] = True  # unknown chat format: fall back to loss on everything not otherwise masked
            return mask
        k = len(self.model_ids)
        for b, row in enumerate(input_ids.tolist()):
            inside = False
            i = 0
            while i < len(row):
                tid = row[i]
                if not inside and tid == self.turn_start and row[i + 1 : i + 1 + k] == self.model_ids:
                    inside = True
                    i += 1 + k + 1  # skip '<start_of_turn>', 'model' and the newline after it
                    continue
                if inside:
                    mask[b, i] = True
                    if tid == self.turn_end:
                        inside = False
                i += 1
        return mask
