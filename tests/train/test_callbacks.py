"""Evaluation during training: the project's VQA scores every N steps, in the metrics and beside the loss."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from medvlab.train.callbacks import EvalPrompt, VQAEvalCallback, sft_prompts
from medvlab.train.metrics import read_metrics
from medvlab.train.sft import run_sft
from tests.helpers import sft_config, write_jsonl


def test_eval_prompts_split_question_and_reference() -> None:
    record = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are a radiologist."}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Pneumothorax?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "No pneumothorax."}]},
        ],
        "images": [Image.new("RGB", (8, 8))],
    }
    (prompt,) = sft_prompts([record])
    assert prompt.answer == "No pneumothorax." and prompt.messages == record["messages"][:2]
    chinese = EvalPrompt(record["messages"][:2], [], "没有气胸。")
    callback = VQAEvalCallback([prompt, chinese, EvalPrompt([], [], "Left lower lobe")], None, 2, Path("."))
    assert [i.closed for i in callback.items] == [True, True, False]  # yes/no references are closed questions
    assert callback.items[0].question == "Pneumothorax?"


@pytest.mark.slow
def test_sft_evaluates_every_n_steps_and_plots_it(
    train_dir: Path, tmp_path: Path, cache_dir: Path, tiny_dir: Path
) -> None:
    rows = [json.loads(line) for line in (train_dir / "train.jsonl").read_text().splitlines()[:2]]
    for row in rows:
        row["images"] = [str(train_dir / name) for name in row["images"]]
    eval_file = write_jsonl(tmp_path / "eval.jsonl", rows)  # one closed (en) and one open (zh) question
    out = tmp_path / "run"
    run_sft(sft_config(train_dir, out, max_steps=4, eval_data=eval_file, eval_steps=2), cache_dir)

    evals = [r for r in read_metrics(out) if "eval_closed_accuracy" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for row in evals:
        assert 0.0 <= row["eval_closed_accuracy"] <= 1.0 and 0.0 <= row["eval_open_f1"] <= 1.0
        # the row holds what medvlab eval's scorer wrote for that step's answers
        step = out / "eval" / f"step-{row['step']}"
        summary = json.loads((step / "summary.json").read_text())["model"]
        assert row["eval_closed_accuracy"] == summary["closed_accuracy"]
        assert row["eval_open_f1"] == summary["open_f1"]
        with (step / "predictions.csv").open(encoding="utf-8") as fh:
            predictions = list(csv.DictReader(fh))
        assert [p["type"] for p in predictions] == ["CLOSED", "OPEN"]
        assert all(p["model_prediction"].strip() for p in predictions)  # the model really answered
    assert any("eval_loss" in r for r in read_metrics(out))  # the trainer's own eval still runs

    # curves: loss, eval_loss, eval_closed_accuracy, eval_open_f1 side by side (4.2 in x 110 dpi each)
    with Image.open(out / "training_curves.png") as png:
        assert png.width == round(4.2 * 4 * 110)
