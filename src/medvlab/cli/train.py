"""``medvlab train sft|dpo|merge``: fine-tuning recipes (flags > --config YAML > defaults).

The sft/dpo options are generated from :class:`~medvlab.train.config.SFTTrainConfig` and
:class:`~medvlab.train.config.DPOTrainConfig`: one per field, its attribute docstring as help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medvlab.cli.dataclass_options import DataclassOptions, Flag
from medvlab.cli.train_options import CONFIG, FILE_ONLY, FLAGS
from medvlab.cli.train_view import quiet_warnings, show_summary
from medvlab.train.config import DPOTrainConfig, SFTTrainConfig
from medvlab.train.distributed import is_main_process

train_app = typer.Typer(
    help="Fine-tune the vision-language model (LoRA / QLoRA SFT, DPO, GRPO), sample preference pairs, merge.",
    no_args_is_help=True,
)


SFT = DataclassOptions(
    SFTTrainConfig, {**FLAGS, "completion_only_loss": Flag(("--completion-only/--full-loss",))}, FILE_ONLY
)
DPO = DataclassOptions(DPOTrainConfig, FLAGS, (*FILE_ONLY, "group_by_length"))  # DPO batches unsorted


@train_app.command("sft")
@SFT.command
def sft(flags: dict[str, Any], config: Path | None = CONFIG) -> None:
    """Supervised fine-tuning with LoRA (or QLoRA) on image + conversation records."""
    from medvlab.train.config import resolve
    from medvlab.train.runs import preflight

    quiet_warnings()
    cfg = resolve(SFTTrainConfig, config, **flags)
    preflight(cfg, "sft")  # finished run? bad data? -> one line in a second, before torch and the model load
    from medvlab.train.sft import run_sft

    run_sft(cfg)
    if is_main_process():  # under torchrun / accelerate launch every rank gets here
        show_summary(cfg.output_dir)


@train_app.command("dpo")
@DPO.command
def dpo(flags: dict[str, Any], config: Path | None = CONFIG) -> None:
    """Direct preference optimisation on (image, prompt, chosen, rejected) records."""
    from medvlab.train.config import resolve
    from medvlab.train.runs import preflight

    quiet_warnings()
    cfg = resolve(DPOTrainConfig, config, **flags)
    preflight(cfg, "dpo")
    from medvlab.train.dpo import run_dpo

    run_dpo(cfg)
    if is_main_process():
        show_summary(cfg.output_dir)


@train_app.command("merge")
def merge(
    adapter: Path = typer.Argument(..., help="Adapter folder from train sft/dpo."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the merged full model."),
    base: str | None = typer.Option(None, "--base", help="Base model (default: the one the adapter names)."),
) -> None:
    """Merge an adapter into its base model: a full model folder for ask/serve --model."""
    from medvlab.train.merge import merge_adapter

    typer.echo(f"merged model written to {merge_adapter(adapter, output, base)}")


# GRPO and sampled preference pairs live in their own module (it imports FLAGS etc. from this one).
from medvlab.cli.train_rl import grpo, sample  # noqa: E402

train_app.command("grpo")(grpo)
train_app.command("sample")(sample)

from medvlab.cli.train_export import export  # noqa: E402

train_app.command("export")(export)

from medvlab.cli.train_federated import federated  # noqa: E402

train_app.command("federated")(federated)
