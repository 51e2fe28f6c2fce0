"""Merge a LoRA adapter into its base model and save a full model folder (servable without peft)."""

from __future__ import annotations

import json
from pathlib import Path

from medvlab.errors import ModelNotFoundError
from medvlab.vlm.loading import resolve_model_source


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on (from its adapter_config.json)."""
    cfg = adapter_dir / "adapter_config.json"
    if not cfg.exists():
        raise ModelNotFoundError(
            f"'{adapter_dir}' holds no adapter_config.json.", "Point at a trained adapter folder."
        )
    return str(json.loads(cfg.read_text())["base_model_name_or_path"])


def merge_adapter(
    adapter_dir: Path, output_dir: Path, base: str | None = None, cache_dir: Path | None = None
) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = resolve_model_source(base or adapter_base(adapter_dir), cache_dir)
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(output_dir))
    processor_src = adapter_dir if (adapter_dir / "processor_config.json").exists() else Path(source)
    AutoProcessor.from_pretrained(str(processor_src)).save_pretrained(str(output_dir))
    return output_dir
