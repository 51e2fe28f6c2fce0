"""``medvlab train grpo|sample``: reinforcement learning with rewards, and sampled preference pairs.

Options are generated from :class:`~medvlab.train.grpo_config.GrpoTrainConfig` and
:class:`~medvlab.train.grpo_config.SampleConfig` (one per field, its attribute docstring as help);
``--reward NAME[=WEIGHT]`` and ``--reward-plugin FILE`` repeat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medvlab.cli.dataclass_options import DataclassOptions, Flag
from medvlab.cli.train_options import CONFIG, FILE_ONLY, FLAGS
from medvlab.cli.train_view import quiet_warnings, show_summary
from medvlab.train.distributed import is_main_process
from medvlab.train.grpo_config import GrpoTrainConfig, SampleConfig

REWARD_FLAGS = {
    "rewards": Flag(("--reward", "-r")),
    "reward_plugins": Flag(("--reward-plugin",)),
}
GRPO = DataclassOptions(GrpoTrainConfig, {**FLAGS, **REWARD_FLAGS}, (*FILE_ONLY, "group_by_length"))
SAMPLE = DataclassOptions(
    SampleConfig,
    {
        **REWARD_FLAGS,
        "model": Flag(("--model", "-m")),
        "output": Flag(("--output", "-o")),
        "device": Flag(("--device", "-d")),
        "window": Flag(("--window", "-w")),
        "scores": Flag(("--scores/--no-scores",)),
    },
)


@GRPO.command
def grpo(flags: dict[str, Any], config: Path | None = CONFIG) -> None:
    """GRPO with LoRA: sample answers per image + question, reward them (--reward NAME[=WEIGHT] ...)."""
    from medvlab.train.config import resolve

    quiet_warnings()
    cfg = resolve(GrpoTrainConfig, config, **flags)
    from medvlab.train.grpo import run_grpo

    run_grpo(cfg)
    if is_main_process():  # under torchrun / accelerate launch every rank gets here
        show_summary(cfg.output_dir)
        _show_rewards(cfg.output_dir)


def _show_rewards(folder: Path) -> None:
    """Each reward's mean at the first and the last logged step (GRPO's loss says little by itself)."""
    from medvlab.train.metrics import read_metrics

    rows = [r for r in read_metrics(folder) if "reward" in r]
    if not rows:
        return
    keys = ["reward", *sorted(k for k in rows[-1] if k.startswith("rewards/") and k.endswith("/mean"))]
    for key in keys:
        name = key.removeprefix("rewards/").removesuffix("/mean")
        typer.echo(f"{name:>16}: {rows[0][key]:.4g} -> {rows[-1][key]:.4g}")


@SAMPLE.command
def sample(flags: dict[str, Any]) -> None:
    """Sample N answers per prompt, score them with rewards, write chosen/rejected pairs for train dpo."""
    from medvlab.train.sample import run_sample

    quiet_warnings()
    summary = run_sample(SAMPLE.build(flags))
    typer.echo(
        f"wrote {summary.pairs + summary.feedback_pairs} pair(s) to {summary.output} "
        f"({summary.pairs} sampled from {summary.prompts} prompt(s), {summary.tied} skipped as all tied, "
        f"{summary.feedback_pairs} from feedback)"
        + (f"; every scored answer in {summary.scores}" if summary.scores else "")
    )
