"""``medvlab train federated``: LoRA fine-tuning across sites that keep their images (Flower FedAvg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medvlab.cli.dataclass_options import DataclassOptions, Flag
from medvlab.cli.train_options import CONFIG, FILE_ONLY, FLAGS
from medvlab.train.federated import FederatedConfig

FEDERATED = DataclassOptions(
    FederatedConfig,
    {**FLAGS, "sites": Flag(("--site",)), "max_steps": Flag(("--local-steps", "--max-steps"))},
    # one JSONL per site instead of --data; no resuming or multi-GPU launch inside a site (yet)
    (*FILE_ONLY, "data", "eval_data", "eval_steps", "resume", "distributed", "qlora"),
)


@FEDERATED.command
def federated(flags: dict[str, Any], config: Path | None = CONFIG) -> None:
    """Federated LoRA fine-tuning: each --site JSONL trains locally, the server averages the adapters."""
    from medvlab.train.config import resolve
    from medvlab.train.federated import run_federated

    cfg = resolve(FederatedConfig, config, **flags)
    adapter = run_federated(cfg)
    typer.echo(
        f"averaged adapter of {len(cfg.sites)} sites after {cfg.rounds} round(s) written to {adapter}; "
        f"what travelled: {cfg.output_dir / 'traffic.jsonl'}"
    )
