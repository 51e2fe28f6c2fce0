"""GRPO and sampled preference pairs on the tiny model, with a built-in and a plugin reward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from medvlab.cli.main import app
from medvlab.config import GenerationOptions, PromptOptions
from medvlab.errors import ConfigError, DeviceError
from medvlab.train.config import RESOLVED_NAME
from medvlab.train.data import ImageCache, load_dpo
from medvlab.train.grpo import run_grpo
from medvlab.train.grpo_config import GrpoTrainConfig, SampleConfig, check_vllm
from medvlab.train.metrics import read_metrics
from medvlab.train.prompts import load_prompts
from medvlab.train.sample import run_sample
from tests.train.test_recipes import lora_b

PLUGIN = '''
from medvlab.train.rewards import reward


@reward("ascii_share")
def ascii_share(completions, reference, **fields):
    """Share of ASCII characters in the answer (varies between sampled answers)."""
    return [sum(ch.isascii() for ch in c) / max(len(c), 1) for c in completions]
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "my_rewards.py"
    path.write_text(PLUGIN, encoding="utf-8")
    return path


def test_prompt_records(train_dir: Path, tmp_path: Path) -> None:
    cache = ImageCache(PromptOptions(max_slices=8))
    records = load_prompts(train_dir / "train.jsonl", cache)
    assert len(records) == 8
    first = records[0]
    assert first["fields"] == {"reference": "No pneumothorax.", "question": "Is there a pneumothorax?"}
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]  # the reference is not in the prompt
    assert len(first["images"]) == 1 and first["images"][0].mode == "RGB"
    extra = tmp_path / "p.jsonl"
    cxr = (train_dir / "cxr.dcm").resolve()
    extra.write_text(
        json.dumps({"prompt": "<image>Side?", "images": [str(cxr)], "laterality": "left"}) + "\n",
        encoding="utf-8",
    )
    (rec,) = load_prompts(extra, cache)
    assert rec["fields"] == {"reference": None, "question": "Side?", "laterality": "left"}
    assert rec["image_paths"] == [str(cxr)]


@pytest.mark.slow
def test_grpo_trains_the_adapter_with_plugin_rewards(
    train_dir: Path, tmp_path: Path, cache_dir: Path, plugin: Path
) -> None:
    out = tmp_path / "grpo"
    cfg = GrpoTrainConfig(
        model="tiny",
        data=train_dir / "train.jsonl",
        output_dir=out,
        rewards=["length=0.5", "ascii_share"],
        reward_plugins=[str(plugin)],
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        batch_size=2,
        grad_accum=1,
        learning_rate=1e-2,
        logging_steps=1,
        warmup_ratio=0.0,
        lora_rank=4,
    )
    adapter = run_grpo(cfg, cache_dir)
    b = lora_b(adapter)
    assert b and any(float(v.abs().sum()) > 0 for v in b.values())  # LoRA B starts at zero: GRPO moved it
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("rewards/length/mean", "rewards/ascii_share/mean", "reward", "kl"):
        assert all(key in r for r in rows), key
    # the total is the weighted sum of the per-reward means
    r = rows[0]
    assert r["reward"] == pytest.approx(
        0.5 * r["rewards/length/mean"] + r["rewards/ascii_share/mean"], abs=1e-4
    )
    assert (out / "training_curves.png").stat().st_size > 10_000 and (out / "metrics.csv").exists()
    resolved = yaml.safe_load((out / RESOLVED_NAME).read_text())
    assert resolved["kind"] == "GrpoTrainConfig" and resolved["reward_plugins"] == [str(plugin)]
    assert resolved["num_generations"] == 2 and (adapter / RESOLVED_NAME).exists()
    assert json.loads((out / "run_summary.json").read_text())["global_step"] == 2
    with pytest.raises(ConfigError, match="already holds a finished run"):  # not trained again by accident
        run_grpo(cfg, cache_dir)


@pytest.mark.slow
def test_sample_writes_pairs_that_train_dpo_reads(
    train_dir: Path, tmp_path: Path, cache_dir: Path, plugin: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = (train_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    base = train_dir.resolve()
    recs = []
    for line in lines:  # absolute image paths: the prompts live elsewhere than the images
        rec = json.loads(line)
        rec["images"] = [str(base / p) for p in rec["images"]]
        recs.append(rec)
    prompts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    out = tmp_path / "out" / "pairs.jsonl"
    cfg = SampleConfig(
        model="tiny",
        data=prompts,
        output=out,
        n=3,
        rewards=["ascii_share", "length=0.5"],
        reward_plugins=[plugin],
        max_new_tokens=8,
        feedback=train_dir / "prefs.jsonl",  # the format `medvlab feedback export --format dpo` writes
    )
    summary = run_sample(cfg, cache_dir)
    assert summary.prompts == 2 and summary.pairs + summary.tied == 2 and summary.pairs >= 1
    n_feedback = len((train_dir / "prefs.jsonl").read_text().splitlines())
    assert summary.feedback_pairs == n_feedback
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary.pairs + n_feedback
    scored = [json.loads(x) for x in summary.scores.read_text(encoding="utf-8").splitlines()]  # type: ignore[union-attr]
    for row in rows[: summary.pairs]:
        assert row["chosen_score"] > row["rejected_score"] and row["chosen"] != row["rejected"]
        line = next(s for s in scored if max(s["total"]) == pytest.approx(row["chosen_score"]))
        assert row["chosen"] in line["answers"] and row["rejected"] in line["answers"]
    # exactly the DPO format: the loader accepts every pair (images resolved from the output folder)
    loaded = load_dpo(out, ImageCache(PromptOptions(max_slices=8)))
    assert len(loaded) == len(rows) and all(r["images"] for r in loaded)
    # and a real DPO step runs on it
    result = CliRunner().invoke(
        app,
        [
            "train",
            "dpo",
            "--model",
            "tiny",
            "--data",
            str(out),
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


def test_grpo_cli_errors_come_before_the_model_loads(train_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "grpo", "--model", "no/such-model", "--data", str(train_dir / "train.jsonl")]
    result = runner.invoke(app, [*base, "--reward", "corectness", "-o", str(tmp_path / "a")])
    assert isinstance(result.exception, ConfigError) and "did you mean 'correctness'" in str(result.exception)
    result = runner.invoke(app, [*base, "--reward", "length", "--reward-plugin", str(tmp_path / "x.py")])
    assert isinstance(result.exception, ConfigError) and "x.py' does not exist" in str(result.exception)
    result = runner.invoke(app, [*base, "--reward", "length", "--num-generations", "3"])
    assert isinstance(result.exception, ConfigError) and "multiple of num_generations" in str(
        result.exception
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "assistant", "content": "hi"}]}\n')
    result = runner.invoke(
        app, ["train", "grpo", "--model", "no/such", "--data", str(bad), "--reward", "length"]
    )
    assert "bad.jsonl line 1" in str(result.exception)
    assert not (tmp_path / "a").exists()


def test_use_vllm_needs_vllm_and_a_gpu() -> None:
    with pytest.raises((ConfigError, DeviceError), match="vllm|CUDA"):
        check_vllm("cpu")


class CannedBackend:
    """Stands in for the model in pairing tests: the k-th answer to every prompt is ``answers[k]``."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.seeds: list[int | None] = []

    def stream(self, messages: list[dict[str, Any]], options: GenerationOptions) -> list[str]:
        pictures = [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]
        assert pictures and all(isinstance(p, Image.Image) for p in pictures)  # windowed pictures filled in
        self.seeds.append(options.seed)
        return [self.answers[(len(self.seeds) - 1) % len(self.answers)]]


def test_sample_pairs_best_against_worst_and_skips_ties(
    train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medvlab.vlm.engine as engine

    answers = ["Water on the lung.", "", "Small pleural effusion, no pneumothorax.", "Lungs clear."]
    backend = CannedBackend(answers)
    monkeypatch.setattr(engine, "load_backend", lambda *a, **k: backend)
    prompts = tmp_path / "prompts.jsonl"
    cxr = str((train_dir / "cxr.dcm").resolve())
    prompts.write_text(
        json.dumps({"prompt": "<image>Effusion?", "images": [cxr]})
        + "\n"
        + json.dumps({"prompt": "<image>积液？", "images": [cxr]})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "pairs.jsonl"
    cfg = SampleConfig(model="tiny", data=prompts, output=out, n=4, rewards=["terminology"], seed=7)
    summary = run_sample(cfg)
    # terminology -1, (empty: never a side), 1, 0: best "Small pleural effusion...", worst "Water on ..."
    assert summary.pairs == 2 and summary.tied == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["chosen"] == answers[2] and rows[0]["rejected"] == answers[0]
    assert (rows[0]["chosen_score"], rows[0]["rejected_score"]) == (1.0, -1.0)
    assert rows[0]["images"] == [cxr] and rows[0]["prompt"][-1]["content"][0] == {"type": "image"}
    assert backend.seeds == list(range(7, 15))  # answer k of prompt i: seed + i * n + k
    assert len(load_dpo(out, ImageCache(PromptOptions(max_slices=8)))) == 2
    # all tied (no lexicon term in any answer): no pair
    backend2 = CannedBackend(["Lungs clear.", "Heart normal."])
    monkeypatch.setattr(engine, "load_backend", lambda *a, **k: backend2)
    summary = run_sample(SampleConfig(model="tiny", data=prompts, output=out, n=2, rewards=["terminology"]))
    assert (summary.pairs, summary.tied) == (0, 2) and out.read_text() == ""
