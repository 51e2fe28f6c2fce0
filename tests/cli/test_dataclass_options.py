"""CLI options generated from the config dataclasses: every field a flag, docstrings as help, precedence."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pytest
import typer
import yaml
from typer.testing import CliRunner

from medvlab.cli import seg as seg_cli
from medvlab.cli import train as train_cli
from medvlab.cli.dataclass_options import DataclassOptions, Flag, field_docs, help_line
from medvlab.cli.main import app
from medvlab.seg.config import SegTrainConfig
from medvlab.train.config import DPOTrainConfig, SFTTrainConfig

runner = CliRunner()

COMMON = [
    "--config",
    "--model",
    "--data",
    "--eval-data",  # --eval still works (an alias)
    "--distributed",
    "--optim",
    "--overwrite",
    "--output-dir",
    "--lora-rank",
    "--lora-alpha",
    "--lora-dropout",
    "--target-modules",
    "--modules-to-save",
    "--qlora",
    "--freeze-vision",
    "--epochs",
    "--max-steps",
    "--batch-size",
    "--grad-accum",
    "--lr",
    "--logging-steps",
    "--save-steps",
    "--eval-steps",
    "--seed",
    "--device",
    "--dtype",
    "--window",
    "--max-slices",
    "--resume",
    "--gradient-checkpointing",
    "--cache-images",
]
FLAGS = {
    ("train", "sft"): {*COMMON, "--group-by-length", "--completion-only", "--max-length", "--packing"},
    ("train", "dpo"): {*COMMON, "--beta", "--loss-type"},
    ("seg", "train"): {
        "--images",
        "--labels",
        "--output",
        "--val-images",
        "--val-labels",
        "--net",
        "--width",
        "--patch",
        "--spacing",
        "--label-names",
        "--binarize",
        "--intensity",
        "--synth-head",
        "--largest-component",
        "--epochs",
        "--steps-per-epoch",
        "--batch-size",
        "--samples",
        "--lr",
        "--amp",
        "--device",
        "--seed",
        "--val-every",
        "--resume",
        "--workers",
    },
}
"""The flags each command had when they were still written by hand: the generated ones must match."""
COMMANDS = [
    (("train", "sft"), train_cli.SFT, SFTTrainConfig),
    (("train", "dpo"), train_cli.DPO, DPOTrainConfig),
    (("seg", "train"), seg_cli.TRAIN, SegTrainConfig),
]


def _params(path: tuple[str, str]) -> dict[str, Any]:
    group: Any = typer.main.get_command(app)
    return {p.name: p for p in group.commands[path[0]].commands[path[1]].params}


@pytest.mark.parametrize(("path", "options", "cls"), COMMANDS)
def test_every_field_is_a_flag_with_its_docstring_as_help(
    path: tuple[str, str], options: DataclassOptions[Any], cls: type
) -> None:
    params = _params(path)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name not in options.names:
            continue  # set in a config file or in Python only, by an explicit list
        assert f.name in params, f"{f.name} has no flag"
        assert (
            params[f.name].help == help_line(docs[f.name]) == docs[f.name].splitlines()[0].replace("``", "")
        )
    skipped = {f.name for f in dataclasses.fields(cls)} - set(options.names)
    assert skipped <= {
        "lr_scheduler",
        "warmup_ratio",
        "weight_decay",
        "max_grad_norm",
        "save_total_limit",
    } | {
        "group_by_length",  # DPO does not batch by length
        "augment",
    }


@pytest.mark.parametrize(("path", "options", "cls"), COMMANDS)
def test_flag_names_are_the_ones_the_cli_always_had(
    path: tuple[str, str], options: DataclassOptions[Any], cls: type
) -> None:
    decls = {p.opts[0] for p in _params(path).values() if p.opts and p.name != "help"}
    assert decls == FLAGS[path]
    shorts = {d for p in _params(path).values() for d in p.opts if not d.startswith("--")}
    assert shorts == ({"-o", "-d"} if path[0] == "seg" else {"-m", "-o", "-d", "-w"})


def test_inherited_and_overridden_docstrings() -> None:
    docs = field_docs(DPOTrainConfig)
    assert docs["lora_rank"] == "LoRA rank r."  # from TrainConfig
    assert "DPO" in docs["learning_rate"]  # the subclass's own docstring wins
    assert help_line("Uses ``x``.\n\nMore.") == "Uses x."


@dataclasses.dataclass
class Toy:
    """A configuration to parse."""

    name: str
    """Who it is for."""
    size: int = 3
    """How big.

    Only the first line is help."""
    rate: float = 0.5
    """How fast."""
    tags: list[str] = dataclasses.field(default_factory=list)
    """Comma-separated tags."""
    loud: bool = False
    """Shout."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    where: Path | None = None
    """Where to write."""


TOY = DataclassOptions(
    Toy, {"tags": Flag(cli_type=str, parse=lambda t: t.split(",")), "where": Flag(("--where", "-W"))}
)


def _toy_app(seen: list[tuple[dict[str, Any], Toy]]) -> typer.Typer:
    toy_app = typer.Typer()

    @toy_app.command()
    @TOY.command
    def run(flags: dict[str, Any], extra: int = typer.Option(0, "--extra")) -> None:
        seen.append((flags, TOY.build(flags, {"size": 7})))

    return toy_app


def test_parsing_flags_gives_the_dataclass() -> None:
    seen: list[tuple[dict[str, Any], Toy]] = []
    args = ["--name", "x", "--rate", "0.5", "--tags", "a,b", "--loud", "--mode", "b", "-W", "out"]
    result = runner.invoke(_toy_app(seen), args)
    assert result.exit_code == 0, result.output
    flags, toy = seen[0]
    # --rate equals the default but was passed, so it counts; --size was not: the base (7) stays
    assert flags == {
        "name": "x",
        "rate": 0.5,
        "tags": ["a", "b"],
        "loud": True,
        "mode": "b",
        "where": Path("out"),
    }
    assert toy == Toy("x", 7, 0.5, ["a", "b"], True, "b", Path("out"))
    result = runner.invoke(_toy_app(seen), ["--name", "y", "--no-loud", "--size", "9"])
    assert result.exit_code == 0, result.output
    assert seen[1][1] == Toy("y", 9)
    assert runner.invoke(_toy_app(seen), []).exit_code != 0  # --name has no default: required


def test_toy_help_is_the_docstring_and_shows_defaults() -> None:
    result = runner.invoke(_toy_app([]), ["--help"], env={"COLUMNS": "200"})
    assert "How big." in result.output and "Only the first line" not in result.output
    assert "--loud" in result.output and "--no-loud" in result.output and "--extra" in result.output


def test_train_sft_precedence_defaults_yaml_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train_dir: Path
) -> None:
    import medvlab.train.sft

    seen: list[SFTTrainConfig] = []

    def fake_run(cfg: SFTTrainConfig) -> Path:
        seen.append(cfg)
        return tmp_path / "adapter"

    monkeypatch.setattr(medvlab.train.sft, "run_sft", fake_run)
    cfg_file = tmp_path / "sft.yaml"
    cfg_file.write_text(
        yaml.safe_dump({"lora_rank": 4, "batch_size": 2, "resume": True, "warmup_ratio": 0.1})
    )
    args = ["train", "sft", "--config", str(cfg_file), "--lora-rank", "6", "--no-resume", "--lr", "0.01"]
    args += ["--data", str(train_dir / "train.jsonl"), "-o", str(tmp_path / "run")]  # data is checked first
    result = runner.invoke(
        app, [*args, "--modules-to-save", "lm_head, embed_tokens", "--full-loss", "-w", "lung"]
    )
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert (cfg.lora_rank, cfg.batch_size, cfg.resume, cfg.learning_rate) == (6, 2, False, 0.01)
    assert cfg.warmup_ratio == 0.1 and cfg.modules_to_save == ["lm_head", "embed_tokens"]
    assert cfg.completion_only_loss is False and cfg.window == "lung"
    assert cfg.grad_accum == SFTTrainConfig.grad_accum and cfg.model == SFTTrainConfig.model  # defaults


def test_seg_train_flags_become_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medvlab.seg.train
    from medvlab.seg.train import TrainResult

    seen: list[SegTrainConfig] = []

    def fake_train(cfg: SegTrainConfig, on_epoch: Any = None) -> TrainResult:
        seen.append(cfg)
        return TrainResult(cfg.output_dir, 0.5, 1, 1, [])

    monkeypatch.setattr(medvlab.seg.train, "train_segmentation", fake_train)
    args = ["seg", "train", "--images", "a", "--images", "b", "--labels", "c", "--labels", "d"]
    args += [
        "--samples",
        "3",
        "--spacing",
        "1.5,1.5,2",
        "--label-names",
        "liver, spleen",
        "--net",
        "SegResNet",
    ]
    result = runner.invoke(app, [*args, "-o", str(tmp_path), "--amp", "-d", "cpu"])
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert cfg.images == ["a", "b"] and cfg.labels == ["c", "d"] and cfg.output_dir == tmp_path
    assert (cfg.num_samples, cfg.spacing, cfg.label_names) == (3, (1.5, 1.5, 2.0), ["liver", "spleen"])
    assert (cfg.net, cfg.amp, cfg.device) == ("segresnet", True, "cpu")
    assert (cfg.epochs, cfg.patch, cfg.val_images, cfg.augment) == (50, 96, [], True)  # defaults
    result = runner.invoke(app, ["seg", "train", "--images", "a", "--labels", "b"])
    assert seen[1].output_dir == Path("runs/seg")
    result = runner.invoke(app, [*args[:10], "--spacing", "0,1,1"])
    assert result.exit_code != 0 and "positive" in str(result.exception)
