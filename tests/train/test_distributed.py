"""Training under torchrun: two CPU processes with gloo split the data and end with one adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from medvlab.devices import resolve_device
from medvlab.errors import ConfigError
from medvlab.train import distributed
from medvlab.train.config import SFTTrainConfig
from medvlab.train.distributed import config_file, tensor_digest, trainer_arguments, world
from medvlab.train.metrics import read_metrics
from tests.helpers import free_port

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_launcher_environment_sets_device_backend_and_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = resolve_device("cpu")
    assert trainer_arguments("ddp", cpu) == {} and world().main  # a lone process: nothing added
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert not distributed.is_main_process()
    args = trainer_arguments("fsdp", cpu)
    assert args["ddp_backend"] == "gloo" and args["fsdp"] is True
    assert args["fsdp_config"] == yaml.safe_load(config_file("fsdp.yaml").read_text())
    assert args["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    gpu = replace(cpu, kind="cuda", index=0)
    assert distributed.device_for_rank(gpu).torch_device == "cuda:1"  # accelerator LOCAL_RANK
    assert distributed.device_for_rank(cpu).torch_device == "cpu"
    for name in ("zero2.json", "zero3.json"):
        stage = json.loads(config_file(name).read_text())["zero_optimization"]["stage"]
        assert stage == int(name[4])


def test_zero_without_deepspeed_and_unknown_strategy_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(distributed, "has_module", lambda name: name != "deepspeed")
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        trainer_arguments("zero3", resolve_device("cpu"))
    with pytest.raises(ConfigError, match="ddp, fsdp, zero2 or zero3"):
        SFTTrainConfig(distributed="zero4")  # type: ignore[arg-type]


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_split_the_data_and_agree_on_the_adapter(
    train_dir: Path, tmp_path: Path, tiny_dir: Path
) -> None:
    out = tmp_path / "ddp"
    env = {
        **os.environ,
        distributed.TRACE_ENV: "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        str(TORCHRUN),
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        "-m",
        "medvlab.cli.main",
        "train",
        "sft",
        "--model",
        "tiny",
        "--data",
        str(train_dir / "train.jsonl"),
        "--max-steps",
        "2",
        "--batch-size",
        "1",
        "--grad-accum",
        "1",
        "--logging-steps",
        "1",
        "--lr",
        "0.005",
        "-o",
        str(out),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Training run") == 1  # only rank 0 prints the run summary

    traces = [json.loads((out / f"trace-rank{r}.json").read_text()) for r in (0, 1)]
    assert [t["world_size"] for t in traces] == [2, 2] and [t["steps"] for t in traces] == [2, 2]
    seen = [set(t["records"]) for t in traces]
    assert all(seen) and not seen[0] & seen[1]  # each rank trained on its own records

    # DDP all-reduces the gradients: both ranks end with bitwise the same LoRA weights, the ones rank 0 saved
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    assert {k: tensor_digest(v) for k, v in saved.items()} == traces[0]["digests"] == traces[1]["digests"]
    assert any(float(v.abs().sum()) > 0 for k, v in saved.items() if "lora_B" in k)  # it trained

    rows = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]  # one metrics row per step: rank 0 alone writes
    assert (out / "training_curves.png").exists() and (out / "medvlab_train_config.yaml").exists()
