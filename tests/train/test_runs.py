"""A run's output folder and memory options: finished runs, short runs, failed starts, GaLore, 8-bit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medvlab.errors import ConfigError, DataError, DeviceError
from medvlab.train import optim
from medvlab.train.metrics import read_metrics
from medvlab.train.optim import check_optimizer
from medvlab.train.runs import SUMMARY_NAME, preflight, prepare_output, read_summary
from medvlab.train.sft import run_sft
from tests.helpers import sft_config


def steps_logged(out: Path) -> list[int]:
    return [r["step"] for r in read_metrics(out) if "loss" in r]


def test_finished_run_is_refused_continued_or_started_over(
    train_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out = tmp_path / "run"
    run_sft(sft_config(train_dir, out, max_steps=2, logging_steps=10, save_steps=10), cache_dir)
    # fewer steps than the logging interval: the last step is still logged, curves drawn
    assert steps_logged(out) == [2] and (out / "training_curves.png").exists()
    assert read_summary(out)["global_step"] == 2  # type: ignore[index]
    rows = len(read_metrics(out))
    with pytest.raises(
        ConfigError, match=r"already holds a finished run \(2 steps.*--overwrite.*--max-steps"
    ):
        run_sft(sft_config(train_dir, out, max_steps=2), cache_dir)
    assert len(read_metrics(out)) == rows  # nothing trained, no junk row
    run_sft(sft_config(train_dir, out, max_steps=3, save_steps=10), cache_dir)  # continue from checkpoint-2
    assert steps_logged(out) == [2, 3]
    run_sft(sft_config(train_dir, out, max_steps=1, overwrite=True), cache_dir)  # start over
    assert steps_logged(out) == [1] and not (out / "checkpoint-3").exists()
    with pytest.raises(ConfigError, match="not a medvlab training run"):
        prepare_output(sft_config(train_dir, train_dir, overwrite=True))  # never empties a data folder


def test_bad_data_fails_before_the_model_and_leaves_no_folder(
    train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "<image>Effusion?"},
                    {"role": "assistant", "content": "No."},
                ],
                "images": ["missing.dcm"],
            }
        )
        + "\n"
    )
    out = tmp_path / "run"
    from medvlab.train import sft

    def no_model(*a: object, **k: object) -> None:
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(sft, "load_for_training", no_model)
    with pytest.raises(DataError, match="bad.jsonl line 1: image .*missing.dcm' does not exist"):
        run_sft(sft_config(train_dir, out, data=bad))
    assert not out.exists()
    # the CLI's check runs before torch is even imported
    code = (
        "import sys\n"
        "from medvlab.errors import DataError\n"
        "from medvlab.train.config import SFTTrainConfig\n"
        "from medvlab.train.runs import preflight\n"
        f"cfg = SFTTrainConfig(model='tiny', data={str(bad)!r}, output_dir={str(out)!r})\n"
        "try:\n    preflight(cfg, 'sft')\n"
        "except DataError:\n    print('DataError', 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "DataError False", done.stderr
    assert not out.exists()


def test_failed_run_removes_its_fresh_folder(
    train_dir: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trl import SFTTrainer

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("out of memory at step 1")

    monkeypatch.setattr(SFTTrainer, "train", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="out of memory"):
        run_sft(sft_config(train_dir, out), cache_dir)
    assert not out.exists()
    preflight(sft_config(train_dir, out), "sft")  # and a fresh start is possible


def test_galore_trains_full_language_weights(train_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    from medvlab.vlm.tiny import tiny_model_dir

    out = tmp_path / "galore"
    saved = run_sft(
        sft_config(train_dir, out, max_steps=2, optim="galore_adamw", gradient_checkpointing=True), cache_dir
    )
    assert saved == out / "model" and read_summary(out)["saved"] == str(saved)  # type: ignore[index]
    base = load_file(tiny_model_dir(cache_dir) / "model.safetensors")
    tuned = load_file(saved / "model.safetensors")
    q = next(k for k in base if "language_model" in k and k.endswith("q_proj.weight"))
    vision = next(k for k in base if "vision_tower" in k and k.endswith("q_proj.weight"))
    assert not torch.equal(base[q], tuned[q])  # GaLore moved the full weight
    assert torch.equal(base[vision], tuned[vision])  # the vision tower stays frozen
    assert (saved / "processor_config.json").exists()


def test_8bit_optimizer_errors(train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = sft_config(train_dir, tmp_path / "r", optim="adamw_8bit")
    with pytest.raises(DeviceError, match="8-bit optimizers .* need a CUDA GPU; this run is on cpu"):
        check_optimizer(cfg, "cpu")
    monkeypatch.setattr(optim, "has_module", lambda name: False)
    with pytest.raises(ConfigError, match=r"needs bitsandbytes.*pip install 'medvlab\[qlora\]'.*CUDA"):
        check_optimizer(cfg, None)
    with pytest.raises(ConfigError, match="Unknown optimizer 'sgd'"):
        sft_config(train_dir, tmp_path / "r", optim="sgd")
    assert not (tmp_path / "r" / SUMMARY_NAME).exists()
