"""``medvlab train sft|dpo|merge``: fine-tuning recipes (flags > --config YAML > defaults)."""

from __future__ import annotations

from pathlib import Path

import typer

train_app = typer.Typer(
    help="Fine-tune the vision-language model (LoRA / QLoRA SFT, DPO) and merge adapters.",
    no_args_is_help=True,
)

CONFIG = typer.Option(None, "--config", help="YAML file of options (flags win over it).")
MODEL = typer.Option(None, "--model", "-m", help="Base model: hub id, folder or 'tiny'.")
DATA = typer.Option(None, "--data", help="Training JSONL.")
EVAL = typer.Option(None, "--eval", help="Evaluation JSONL.")
OUT = typer.Option(None, "--output-dir", "-o", help="Where checkpoints, adapter and metrics go.")
RANK = typer.Option(None, "--lora-rank", help="LoRA rank (default 16).")
ALPHA = typer.Option(None, "--lora-alpha", help="LoRA alpha (default 32).")
DROPOUT = typer.Option(None, "--lora-dropout", help="LoRA dropout (default 0.05).")
TARGETS = typer.Option(None, "--target-modules", help="'all-linear' or e.g. 'q_proj,v_proj'.")
SAVE_MODULES = typer.Option(
    None, "--modules-to-save", help="Comma-separated modules trained in full (e.g. lm_head)."
)
QLORA = typer.Option(None, "--qlora/--no-qlora", help="4-bit NF4 base (CUDA + bitsandbytes).")
FREEZE = typer.Option(None, "--freeze-vision/--train-vision", help="LoRA on the language model only.")
EPOCHS = typer.Option(None, "--epochs", help="Passes over the data.")
STEPS = typer.Option(None, "--max-steps", help="Stop after N optimizer steps.")
BATCH = typer.Option(None, "--batch-size", help="Records per device per step.")
ACCUM = typer.Option(None, "--grad-accum", help="Gradient accumulation steps.")
LR = typer.Option(None, "--lr", help="Learning rate.")
LOG_STEPS = typer.Option(None, "--logging-steps", help="Write metrics every N steps.")
SAVE_STEPS = typer.Option(None, "--save-steps", help="Checkpoint every N steps.")
EVAL_STEPS = typer.Option(None, "--eval-steps", help="Evaluate every N steps.")
SEED = typer.Option(None, "--seed", help="Random seed.")
DEVICE = typer.Option(None, "--device", "-d", help="cuda, npu, mps, cpu, ...")
DTYPE = typer.Option(None, "--dtype", help="bfloat16, float16 or float32.")
WINDOW = typer.Option(None, "--window", "-w", help="Window for CT/MR images (as at inference).")
SLICES = typer.Option(None, "--max-slices", help="Most slices of a volume per record.")
RESUME = typer.Option(None, "--resume/--no-resume", help="Resume from the last checkpoint (default on).")
CKPT = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Save memory.")
GROUP = typer.Option(None, "--group-by-length/--no-group-by-length", help="Batch similar lengths together.")
CACHE = typer.Option(None, "--cache-images/--no-cache-images", help="Decode each image file once per run.")


def _common(**kw: object) -> dict[str, object]:
    mods = kw.pop("modules_to_save", None)
    if isinstance(mods, str):
        kw["modules_to_save"] = [m.strip() for m in mods.split(",") if m.strip()]
    return kw


@train_app.command("sft")
def sft(
    config: Path | None = CONFIG,
    model: str | None = MODEL,
    data: Path | None = DATA,
    eval_data: Path | None = EVAL,
    output_dir: Path | None = OUT,
    lora_rank: int | None = RANK,
    lora_alpha: int | None = ALPHA,
    lora_dropout: float | None = DROPOUT,
    target_modules: str | None = TARGETS,
    modules_to_save: str | None = SAVE_MODULES,
    qlora: bool | None = QLORA,
    freeze_vision: bool | None = FREEZE,
    epochs: float | None = EPOCHS,
    max_steps: int | None = STEPS,
    batch_size: int | None = BATCH,
    grad_accum: int | None = ACCUM,
    learning_rate: float | None = LR,
    logging_steps: int | None = LOG_STEPS,
    save_steps: int | None = SAVE_STEPS,
    eval_steps: int | None = EVAL_STEPS,
    seed: int | None = SEED,
    device: str | None = DEVICE,
    dtype: str | None = DTYPE,
    window: str | None = WINDOW,
    max_slices: int | None = SLICES,
    resume: bool | None = RESUME,
    gradient_checkpointing: bool | None = CKPT,
    group_by_length: bool | None = GROUP,
    cache_images: bool | None = CACHE,
    completion_only_loss: bool | None = typer.Option(
        None, "--completion-only/--full-loss", help="Loss on the answer only (default) or on prompt text too."
    ),
    max_length: int | None = typer.Option(None, "--max-length", help="Truncate longer sequences."),
) -> None:
    """Supervised fine-tuning with LoRA (or QLoRA) on image + conversation records."""
    from medvlab.train.config import SFTTrainConfig, resolve
    from medvlab.train.sft import run_sft

    flags = _common(**{k: v for k, v in locals().items() if k not in ("config",)})
    cfg = resolve(SFTTrainConfig, config, **flags)
    adapter = run_sft(cfg)
    typer.echo(f"adapter written to {adapter}; metrics and training_curves.png in {cfg.output_dir}")


@train_app.command("dpo")
def dpo(
    config: Path | None = CONFIG,
    model: str | None = MODEL,
    data: Path | None = DATA,
    eval_data: Path | None = EVAL,
    output_dir: Path | None = OUT,
    lora_rank: int | None = RANK,
    lora_alpha: int | None = ALPHA,
    lora_dropout: float | None = DROPOUT,
    target_modules: str | None = TARGETS,
    modules_to_save: str | None = SAVE_MODULES,
    qlora: bool | None = QLORA,
    freeze_vision: bool | None = FREEZE,
    epochs: float | None = EPOCHS,
    max_steps: int | None = STEPS,
    batch_size: int | None = BATCH,
    grad_accum: int | None = ACCUM,
    learning_rate: float | None = LR,
    logging_steps: int | None = LOG_STEPS,
    save_steps: int | None = SAVE_STEPS,
    eval_steps: int | None = EVAL_STEPS,
    seed: int | None = SEED,
    device: str | None = DEVICE,
    dtype: str | None = DTYPE,
    window: str | None = WINDOW,
    max_slices: int | None = SLICES,
    resume: bool | None = RESUME,
    gradient_checkpointing: bool | None = CKPT,
    cache_images: bool | None = CACHE,
    beta: float | None = typer.Option(None, "--beta", help="KL strength (default 0.1)."),
    loss_type: str | None = typer.Option(None, "--loss-type", help="sigmoid, ipo or hinge."),
) -> None:
    """Direct preference optimisation on (image, prompt, chosen, rejected) records."""
    from medvlab.train.config import DPOTrainConfig, resolve
    from medvlab.train.dpo import run_dpo

    flags = _common(**{k: v for k, v in locals().items() if k not in ("config",)})
    cfg = resolve(DPOTrainConfig, config, **flags)
    adapter = run_dpo(cfg)
    typer.echo(f"adapter written to {adapter}; metrics and training_curves.png in {cfg.output_dir}")


@train_app.command("merge")
def merge(
    adapter: Path = typer.Argument(..., help="Adapter folder from train sft/dpo."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the merged full model."),
    base: str | None = typer.Option(None, "--base", help="Base model (default: the one the adapter names)."),
) -> None:
    """Merge an adapter into its base model: a full model folder for ask/serve --model."""
    from medvlab.train.merge import merge_adapter

    typer.echo(f"merged model written to {merge_adapter(adapter, output, base)}")
