"""Quantized export of a merged model for serving: GPTQ / AWQ (4-bit weights) or FP8, via llm-compressor.

``medvlab train export --format gptq|awq|fp8 MERGED -o OUT`` (merge an adapter first with ``train merge``).
The language model's linear layers are quantized; the vision tower, the multimodal projector and the
output head stay in their original precision (quantizing the small SigLIP encoder saves little and costs
accuracy, as llm-compressor's multimodal examples note). The result is saved in compressed-tensors format,
which vLLM loads directly (``medvlab serve --engine vllm --model OUT``).

* ``gptq``: W4A16 with GPTQ's error-correcting rounding; needs calibration records;
* ``awq``: W4A16 (asymmetric) with activation-aware scaling; needs calibration records;
* ``fp8``: FP8 weights with dynamic per-token FP8 activations; no calibration (Hopper / Ada GPUs).

Calibration records are the lab's own SFT JSONL (``--calibration``): images windowed as at inference, the
model sees whole conversations, as in training. llm-compressor quantizes on a CUDA GPU; elsewhere, or
without the package, the command stops with one line saying what to do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medvlab.devices import has_module
from medvlab.errors import ConfigError, DeviceError, ModelNotFoundError

logger = logging.getLogger(__name__)

Format = Literal["gptq", "awq", "fp8"]
FORMATS: tuple[str, ...] = ("gptq", "awq", "fp8")
KEEP_PRECISE = [
    "re:.*lm_head",
    r"re:.*vision_tower.*",
    r"re:.*multi_modal_projector.*",
]
"""Modules left unquantized (llm-compressor ``ignore`` patterns): output head, vision tower, projector."""
SCHEMES = {"gptq": "W4A16", "awq": "W4A16_ASYM", "fp8": "FP8_DYNAMIC"}
"""compressed-tensors preset scheme per format."""
NEEDS_CALIBRATION = {"gptq": True, "awq": True, "fp8": False}


@dataclass
class ExportOptions:
    """What ``train export`` does."""

    model: Path
    """Merged model folder (``train merge`` output) or any full image-text-to-text model folder."""
    output: Path
    """Folder for the quantized model."""
    format: str = "gptq"
    """gptq, awq or fp8."""
    calibration: Path | None = None
    """SFT JSONL whose records calibrate GPTQ / AWQ."""
    samples: int = 64
    """Calibration records used (at most)."""
    max_length: int = 2048
    """Longest calibration sequence (tokens)."""

    def __post_init__(self) -> None:
        self.model, self.output = Path(self.model), Path(self.output)
        self.format = self.format.lower()
        if self.format not in FORMATS:
            raise ConfigError(f"Unknown export format '{self.format}'.", f"Use one of {', '.join(FORMATS)}.")
        if self.samples < 1 or self.max_length < 16:
            raise ConfigError(
                "--samples must be at least 1 and --max-length at least 16.", "Use e.g. 64, 2048."
            )


MODIFIERS = {"gptq": "GPTQModifier", "awq": "AWQModifier", "fp8": "QuantizationModifier"}


def recipe_spec(fmt: str) -> dict[str, Any]:
    """The recipe for ``fmt`` as data: llm-compressor modifier name and its arguments."""
    return {
        "modifier": MODIFIERS[fmt],
        "targets": ["Linear"],
        "scheme": SCHEMES[fmt],
        "ignore": list(KEEP_PRECISE),
    }


def kept_precise(module_name: str) -> bool:
    """True if ``module_name`` matches an ignore pattern (as llm-compressor reads ``re:`` patterns)."""
    return any(re.match(p[3:], module_name) for p in KEEP_PRECISE if p.startswith("re:"))


def recipe(fmt: str) -> list[Any]:
    """The llm-compressor modifiers for ``fmt``, vision tower / projector / head kept precise."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    spec = recipe_spec(fmt)
    args = {k: spec[k] for k in ("targets", "scheme", "ignore")}
    if fmt == "awq":
        from llmcompressor.modifiers.awq import AWQModifier

        return [AWQModifier(**args)]
    return [GPTQModifier(**args) if fmt == "gptq" else QuantizationModifier(**args)]


def check_environment(opts: ExportOptions) -> None:
    """Raise the one-line error where this export cannot run: no model, no package, no GPU, no data."""
    if not (opts.model / "config.json").exists():
        hint = (
            " It is an adapter: run 'medvlab train merge' first."
            if (opts.model / "adapter_config.json").exists()
            else ""
        )
        raise ModelNotFoundError(
            f"'{opts.model}' is not a full model folder (no config.json).{hint}",
            "Point at the folder written by 'medvlab train merge ADAPTER -o MERGED'.",
        )
    if NEEDS_CALIBRATION[opts.format] and opts.calibration is None:
        raise ConfigError(
            f"--format {opts.format} needs calibration records.",
            "Pass --calibration train.jsonl (the SFT records), or use --format fp8 (no calibration).",
        )
    if opts.calibration is not None and not opts.calibration.exists():
        raise ConfigError(
            f"The calibration file '{opts.calibration}' does not exist.", "Check --calibration."
        )
    if not has_module("llmcompressor"):
        raise ConfigError(
            "Quantized export needs llm-compressor, which is not installed.",
            "pip install llmcompressor (on a machine with a CUDA GPU).",
        )
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(
            f"Quantized export ({opts.format}) runs on a CUDA GPU; none is available here.",
            "Run 'medvlab train export' on a machine with an NVIDIA GPU (the merged model copies over).",
        )


def calibration_set(opts: ExportOptions, processor: Any) -> tuple[Any, Any]:
    """(datasets.Dataset of processed records, collator for batch size 1) from the SFT JSONL."""
    import numpy as np
    import torch
    from datasets import Dataset

    from medvlab.config import PromptOptions
    from medvlab.train.collate import VisionSFTCollator
    from medvlab.train.data import ImageCache, load_sft

    assert opts.calibration is not None
    records = load_sft(opts.calibration, ImageCache(PromptOptions()))[: opts.samples]
    collator = VisionSFTCollator(processor, completion_only=False, max_length=None)
    rows = []
    for rec in records:
        batch = collator([rec])
        if batch["input_ids"].shape[1] > opts.max_length:
            continue  # never cut a record (its image tokens must stay whole)
        row = {k: v[0].numpy() for k, v in batch.items() if k not in ("labels", "pixel_values")}
        if "pixel_values" in batch:
            row["pixel_values"] = batch["pixel_values"].numpy()  # every picture of the record
        rows.append(row)
    if not rows:
        raise ConfigError(f"No calibration record fits in {opts.max_length} tokens.", "Raise --max-length.")

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        row = batch[0]
        out = {k: torch.as_tensor(np.asarray(v))[None] for k, v in row.items() if k != "pixel_values"}
        if "pixel_values" in row:  # already batched: one entry per picture
            out["pixel_values"] = torch.as_tensor(np.asarray(row["pixel_values"]), dtype=torch.bfloat16)
        return out

    return Dataset.from_list(rows), collate


def export(opts: ExportOptions) -> Path:
    """Quantize ``opts.model`` and save it compressed to ``opts.output``; returns the output folder."""
    check_environment(opts)
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(opts.model))
    model = AutoModelForImageTextToText.from_pretrained(str(opts.model), dtype=torch.bfloat16)
    kwargs: dict[str, Any] = {"model": model, "recipe": recipe(opts.format)}
    if NEEDS_CALIBRATION[opts.format]:
        dataset, collate = calibration_set(opts, processor)
        kwargs.update(
            dataset=dataset,
            data_collator=collate,
            num_calibration_samples=len(dataset),
            max_seq_length=opts.max_length,
        )
        logger.info("calibrating %s on %d records", opts.format, len(dataset))
    oneshot(**kwargs)
    opts.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(opts.output), save_compressed=True)
    processor.save_pretrained(str(opts.output))
    logger.info("%s model written to %s", opts.format, opts.output)
    return opts.output
