"""Multimodal packing for SFT: several image+text records in one sequence, attention confined to each.

Written here because TRL refuses both ``packing`` and ``padding_free`` for vision datasets (its packer
works on token ids only and would cut an image's soft tokens in two, and it has no way to carry the
pictures along). The scheme is transformers' ``DataCollatorWithFlattening``, extended to images:

* each record is encoded once, on its own, by :class:`~medvlab.train.collate.VisionSFTCollator`
  (so labels are masked exactly as unpacked: prompt, image tokens), and its first label is set to -100
  so no record learns to predict the next record's first token;
* records are packed whole (first-fit decreasing) into sequences of at most ``max_length`` tokens: an
  image's tokens are never split, a record longer than ``max_length`` gets a sequence of its own;
* position ids restart at 0 for every record; there is no 2-D ``attention_mask``; ``pixel_values`` are
  the records' pictures concatenated in record order (the order of their image tokens);
* attention: models whose masks come from transformers' ``create_causal_mask`` detect the restarting
  position ids and build a block-diagonal mask themselves (flash-attention varlen uses them directly).
  Gemma 3 (MedGemma) adds a bidirectional overlay over each image's tokens, and in its sliding-window
  layers transformers looks that overlay up by *record* position instead of by sequence index, so the
  images of every record but the first would see the wrong tokens. :func:`install_packed_attention`
  therefore builds Gemma 3's two masks itself, with transformers' own mask functions:
  ``same_record AND (causal OR same_image)`` (``AND sliding_window`` in the sliding layers), in the
  model's dtype and attention implementation (eager / sdpa: a 4-D block-diagonal mask).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from medvlab.train.collate import IGNORE, VisionSFTCollator

logger = logging.getLogger(__name__)

DEFAULT_PACK_LENGTH = 2048
"""Tokens per packed sequence when ``max_length`` is not set."""


@dataclass
class Encoded:
    """One record, tokenized and label-masked on its own (no padding)."""

    input_ids: list[int]
    labels: list[int]
    token_type_ids: list[int] | None
    images: list[Any]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_records(records: list[dict[str, Any]], collator: VisionSFTCollator) -> list[Encoded]:
    """Each record through the unpacked collator alone: identical tokens and label masking."""
    out = []
    for rec in records:
        batch = collator([rec], truncate=False)
        labels = batch["labels"][0].tolist()
        labels[0] = IGNORE  # record boundary: never predict a record's first token from the previous one
        ttids = batch.get("token_type_ids")
        out.append(
            Encoded(
                input_ids=batch["input_ids"][0].tolist(),
                labels=labels,
                token_type_ids=ttids[0].tolist() if ttids is not None else None,
                images=list(rec["images"]),
            )
        )
    return out


def pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """Record indices grouped into packs of at most ``max_length`` tokens (first-fit decreasing).

    A record longer than ``max_length`` is never cut (its image tokens must stay whole): it gets a pack
    of its own. Within a pack, records keep the data file's order.
    """
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    return [sorted(b) for b in bins]


class PackedCollator:
    """A batch of packs (lists of record indices) -> one row per pack, records back to back."""

    def __init__(self, encoded: list[Encoded], processor: Any, pad_token_id: int) -> None:
        self.encoded = encoded
        self.image_processor = getattr(processor, "image_processor", None)
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [[self.encoded[int(i)] for i in ex["pack"]] for ex in examples]
        width = max(sum(len(r) for r in row) for row in rows)
        has_types = rows[0][0].token_type_ids is not None
        ids, labels, positions, types = [], [], [], []
        images: list[Any] = []
        for row in rows:
            r_ids: list[int] = []
            r_labels: list[int] = []
            r_pos: list[int] = []
            r_types: list[int] = []
            for rec in row:
                r_ids += rec.input_ids
                r_labels += rec.labels
                r_pos += range(len(rec))
                r_types += rec.token_type_ids or []
                images += rec.images
            pad = width - len(r_ids)  # padding is one more "record" (positions restart), never learned
            ids.append(r_ids + [self.pad_token_id] * pad)
            labels.append(r_labels + [IGNORE] * pad)
            positions.append(r_pos + list(range(pad)))
            types.append(r_types + [0] * pad)
        batch: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(positions),
        }
        if has_types:
            batch["token_type_ids"] = torch.tensor(types)
        if images:
            if self.image_processor is None:
                raise ValueError("records hold images but the processor has no image processor")
            batch["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return batch


def packed_dataset(encoded: list[Encoded], max_length: int) -> Any:
    """A ``datasets.Dataset`` of packs: ``pack`` (record indices), ``length`` (tokens)."""
    from datasets import Dataset

    lengths = [len(e) for e in encoded]
    packs = pack(lengths, max_length)
    too_long = sum(1 for n in lengths if n > max_length)
    if too_long:
        logger.warning(
            "%d record(s) are longer than the pack length %d: each trains in a sequence of its own",
            too_long,
            max_length,
        )
    logger.info(
        "packed %d records into %d sequences of up to %d tokens (%.0f%% filled)",
        len(encoded),
        len(packs),
        max_length,
        100 * sum(lengths) / max(1, len(packs) * max_length),
    )
    return Dataset.from_dict(
        {"pack": packs, "length": [sum(lengths[i] for i in p) for p in packs]},
    )


# --- attention for Gemma 3 (see the module docstring) -------------------------------------------------


def segment_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Which record each token belongs to: a new record starts wherever the position restarts."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] <= position_ids[:, :-1]
    return starts.long().cumsum(-1)


def packed_gemma3_masks(
    text_config: Any, dtype: torch.dtype, position_ids: torch.Tensor, token_type_ids: torch.Tensor
) -> dict[str, Any]:
    """Gemma 3's {"full_attention", "sliding_attention"} masks for packed rows, by transformers' functions."""
    from transformers.masking_utils import (
        and_masks,
        blockwise_overlay,
        create_causal_mask,
        packed_sequence_mask_function,
        sliding_window_overlay,
    )
    from transformers.models.gemma3.modeling_gemma3 import get_block_sequence_ids_for_mask

    b, n = position_ids.shape
    shape = torch.empty((b, n, 1), dtype=dtype, device=position_ids.device)  # sizes, dtype, device only
    same_record = packed_sequence_mask_function(segment_ids(position_ids))
    blocks = get_block_sequence_ids_for_mask(token_type_ids, device=position_ids.device)
    same_image = blockwise_overlay(blocks)
    common = {"config": text_config, "inputs_embeds": shape, "attention_mask": None, "cache": None}
    # position_ids=None: sequence indices are used as they are (causal order and the sliding window are
    # the same within a record); `same_record` confines everything to one record
    full = create_causal_mask(
        **common, position_ids=None, or_mask_function=same_image, and_mask_function=same_record
    )
    window = getattr(text_config, "sliding_window", None)
    sliding = full
    if window:
        sliding = create_causal_mask(
            **common,
            position_ids=None,
            or_mask_function=same_image,
            and_mask_function=and_masks(same_record, sliding_window_overlay(window)),
        )
    return {"full_attention": full, "sliding_attention": sliding}


def _gemma3_inner(model: Any) -> Any | None:
    for module in model.modules():
        if type(module).__name__ == "Gemma3Model":
            return module
    return None


def install_packed_attention(model: Any) -> bool:
    """Give Gemma 3 correct per-record masks for packed batches; other models need nothing. True if hooked."""
    inner = _gemma3_inner(model)
    if inner is None:
        return False
    text_config = inner.config.get_text_config()

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        pos, types = kwargs.get("position_ids"), kwargs.get("token_type_ids")
        if kwargs.get("attention_mask") is None and pos is not None and types is not None:
            dtype = module.get_input_embeddings().weight.dtype
            kwargs["attention_mask"] = packed_gemma3_masks(text_config, dtype, pos, types)
        return args, kwargs

    inner.register_forward_pre_hook(hook, with_kwargs=True)
    return True


def packed_inputs(
    model: Any,
    processor: Any,
    cfg: Any,
    train_records: list[dict[str, Any]],
    eval_records: list[dict[str, Any]],
) -> tuple[Any, Any, PackedCollator]:
    """(train dataset of packs, eval dataset of packs or None, collator) for ``SFTTrainConfig.packing``."""
    collator = VisionSFTCollator(processor, cfg.completion_only_loss, cfg.max_length)
    encoded = encode_records(train_records + eval_records, collator)
    length = cfg.max_length or DEFAULT_PACK_LENGTH
    train_ds = packed_dataset(encoded[: len(train_records)], length)
    eval_ds = None
    if eval_records:
        offset = len(train_records)
        eval_ds = packed_dataset(encoded[offset:], length).map(
            lambda r: {"pack": [i + offset for i in r["pack"]]}
        )
    install_packed_attention(model)
    tok = getattr(processor, "tokenizer", processor)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return train_ds, eval_ds, PackedCollator(encoded, processor, int(pad))
