"""SFT and DPO on the tiny model: parameters change, losses fall, outputs are complete and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from medvlab.errors import ConfigError, DeviceError
from medvlab.train.config import RESOLVED_NAME, DPOTrainConfig, SFTTrainConfig, resolve
from medvlab.train.dpo import run_dpo
from medvlab.train.merge import merge_adapter
from medvlab.train.metrics import read_metrics
from medvlab.train.modeling import load_for_training
from medvlab.train.sft import run_sft
from tests.helpers import sft_config


def lora_b(adapter: Path) -> dict[str, torch.Tensor]:
    weights = load_file(adapter / "adapter_model.safetensors")
    return {k: v for k, v in weights.items() if "lora_B" in k}


def test_sft_changes_lora_weights_and_lowers_loss(sft_adapter: Path) -> None:
    b = lora_b(sft_adapter)
    assert b and all(float(v.abs().sum()) > 0 for v in b.values())  # LoRA B starts at zero: training moved it
    run = sft_adapter.parent
    losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    for name in ("metrics.csv", "training_curves.png", RESOLVED_NAME, "adapter/" + RESOLVED_NAME):
        assert (run / name).exists(), name
    resolved = yaml.safe_load((run / RESOLVED_NAME).read_text())
    assert resolved["kind"] == "SFTTrainConfig" and resolved["lora_rank"] == 8
    cfg = json.loads((sft_adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and any("vision_tower" in k for k in b)  # all-linear includes the vision tower


def test_resume_continues_from_the_last_checkpoint(train_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "run"
    run_sft(sft_config(train_dir, out, max_steps=3), cache_dir)
    assert (out / "checkpoint-3").exists()
    run_sft(sft_config(train_dir, out, max_steps=6), cache_dir)
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 4-6 continued; 1-3 were not trained again


def test_freeze_vision_and_modules_to_save(train_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    adapter = run_sft(
        sft_config(
            train_dir,
            tmp_path / "frozen",
            max_steps=2,
            freeze_vision=True,
            modules_to_save=["multi_modal_projector"],
        ),
        cache_dir,
    )
    keys = load_file(adapter / "adapter_model.safetensors").keys()
    assert not any("vision_tower" in k and "lora" in k for k in keys)
    assert any("language_model" in k and "lora_A" in k for k in keys)
    assert any("multi_modal_projector" in k and "lora" not in k for k in keys)  # saved in full


def test_dpo_learns_the_preference(train_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    cfg = DPOTrainConfig(
        model="tiny",
        data=train_dir / "prefs.jsonl",
        output_dir=tmp_path / "dpo",
        max_steps=4,
        batch_size=2,
        grad_accum=1,
        learning_rate=5e-3,
        logging_steps=1,
        warmup_ratio=0.0,
    )
    adapter = run_dpo(cfg, cache_dir)
    assert all(float(v.abs().sum()) > 0 for v in lora_b(adapter).values())
    rows = [r for r in read_metrics(tmp_path / "dpo") if "loss" in r]
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy == reference at the start
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["rewards/margins"] > 0
    assert rows[-1]["rewards/accuracies"] == 1.0


def test_merge_gives_identical_logits(sft_adapter: Path, tmp_path: Path, lab) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from medvlab.train.merge import adapter_base

    merged_dir = merge_adapter(sft_adapter, tmp_path / "merged")
    inputs = lab.backend.prepare(
        [{"role": "user", "content": [{"type": "text", "text": "Is there a pneumothorax?"}]}]
    )
    base = AutoModelForImageTextToText.from_pretrained(adapter_base(sft_adapter), dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(sft_adapter)).eval()
    merged = AutoModelForImageTextToText.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        a = with_adapter(**inputs).logits
        b = merged(**inputs).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert (merged_dir / "processor_config.json").exists() and not (
        merged_dir / "adapter_config.json"
    ).exists()


def test_config_precedence(tmp_path: Path) -> None:
    yaml_file = tmp_path / "cfg.yaml"
    yaml_file.write_text("lora_rank: 4\nlearning_rate: 0.001\nmodel: tiny\n")
    cfg = resolve(SFTTrainConfig, yaml_file, lora_rank=32, learning_rate=None)
    assert cfg.lora_rank == 32 and cfg.learning_rate == 0.001 and cfg.model == "tiny" and cfg.lora_alpha == 32
    yaml_file.write_text("lora_rnak: 4\n")
    with pytest.raises(ConfigError, match="unknown option.*lora_rnak"):
        resolve(SFTTrainConfig, yaml_file)
    with pytest.raises(ConfigError, match="lora_rank must be at least 1"):
        SFTTrainConfig(lora_rank=0)


def test_qlora_off_cuda_is_a_clear_error(train_dir: Path, tmp_path: Path) -> None:
    cfg = sft_config(train_dir, tmp_path, qlora=True)
    with pytest.raises((ConfigError, DeviceError), match="bitsandbytes|CUDA"):
        load_for_training(cfg)
