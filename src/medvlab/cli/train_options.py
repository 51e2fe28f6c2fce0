"""Options every ``medvlab train`` recipe shares (sft, dpo, grpo, sample, federated): kept apart from
``cli/train.py`` so the recipe modules it registers can import them without an import cycle."""

from __future__ import annotations

from typing import Any

import typer

from medvlab.cli.dataclass_options import Flag

CONFIG: Any = typer.Option(None, "--config", help="YAML file of options (flags win over it).")


def _names(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


FLAGS: dict[str, Flag] = {
    "model": Flag(("--model", "-m")),
    "eval_data": Flag(("--eval-data", "--eval")),
    "output_dir": Flag(("--output-dir", "-o")),
    "modules_to_save": Flag(cli_type=str, parse=_names),
    "freeze_vision": Flag(("--freeze-vision/--train-vision",)),
    "learning_rate": Flag(("--lr",)),
    "device": Flag(("--device", "-d")),
    "window": Flag(("--window", "-w")),
}
"""Fields whose flag is not plain ``--field-name`` (shared by sft and dpo)."""
FILE_ONLY: tuple[str, ...] = (
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "save_total_limit",
)
"""Fields set in the --config YAML only (no flag)."""
