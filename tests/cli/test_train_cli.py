"""``medvlab train`` and ``medvlab feedback`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medvlab.cli.main import app

runner = CliRunner()


def test_train_sft_with_yaml_and_flags(train_dir: Path, tmp_path: Path, tiny_dir: Path) -> None:
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": "tiny",
                "lora_rank": 4,
                "batch_size": 2,
                "grad_accum": 1,
                "logging_steps": 1,
                "learning_rate": 0.005,
            }
        )
    )
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "sft",
            "--config",
            str(cfg),
            "--data",
            str(train_dir / "train.jsonl"),
            "--max-steps",
            "2",
            "-o",
            str(out),
            "--lora-rank",
            "6",
            "--freeze-vision",
        ],
    )
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((out / "medvlab_train_config.yaml").read_text())
    assert resolved["lora_rank"] == 6 and resolved["batch_size"] == 2 and resolved["freeze_vision"] is True
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 6
    merged = tmp_path / "merged"
    result = runner.invoke(app, ["train", "merge", str(out / "adapter"), "-o", str(merged)])
    assert result.exit_code == 0 and (merged / "config.json").exists()


def test_train_dpo_cli_and_bad_data(train_dir: Path, tmp_path: Path, tiny_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "dpo",
            "--model",
            "tiny",
            "--data",
            str(train_dir / "prefs.jsonl"),
            "--max-steps",
            "1",
            "--batch-size",
            "1",
            "--grad-accum",
            "1",
            "-o",
            str(tmp_path / "dpo"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dpo" / "adapter" / "adapter_model.safetensors").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(Exception, match="bad.jsonl line 1"):
        runner.invoke(
            app,
            ["train", "sft", "--model", "tiny", "--data", str(bad), "-o", str(tmp_path / "x")],
            catch_exceptions=False,
        )


def test_feedback_export_cli(
    dicom_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medvlab.config import Settings
    from medvlab.services import Lab

    monkeypatch.setenv("MEDVLAB_DATA_DIR", str(tmp_path / "data"))
    Lab(Settings()).record_feedback([dicom_files["CT_small.dcm"]], "Bleed?", "Yes, large.", -1, "No bleed.")
    result = runner.invoke(app, ["feedback", "export", "--format", "dpo", "-o", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0 and "wrote 1 dpo record(s) from 1 rating(s)" in result.stdout
    result = runner.invoke(app, ["feedback", "export", "--format", "dop", "-o", str(tmp_path / "p.jsonl")])
    assert result.exit_code != 0


@pytest.mark.slow
def test_train_sft_as_a_new_user_sees_it(train_dir: Path, tmp_path: Path, tiny_dir: Path) -> None:
    """A real process: no library deprecation warnings, a summary table, a finished run refused."""
    import os
    import subprocess
    import sys

    cli = [sys.executable, "-c", "from medvlab.cli.main import main; main()", "train", "sft"]
    data, out = str(train_dir / "train.jsonl"), str(tmp_path / "run")
    args = [*cli, "--model", "tiny", "--data", data, "-o", out, "--max-steps", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDVLAB_CACHE_DIR": str(tiny_dir.parent)}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    text = done.stdout + done.stderr
    assert "FutureWarning" not in text and "DeprecationWarning" not in text and "deprecated" not in text, text
    assert "{'" not in text  # no Python dict of logs
    assert "Training run" in done.stdout and "steps" in done.stdout and "training_curves.png" in done.stdout
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error: ") and "already holds a finished run" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
