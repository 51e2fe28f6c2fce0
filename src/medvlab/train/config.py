"""Training configuration: dataclasses with attribute docs; defaults < YAML (``--config``) < flags.

The resolved configuration is written next to every output as ``medvlab_train_config.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from medvlab.errors import ConfigError

RESOLVED_NAME = "medvlab_train_config.yaml"
OPTIMIZERS = ("adamw_torch", "galore_adamw", "adamw_8bit", "paged_adamw_8bit")
"""``--optim`` values (transformers names); see :mod:`medvlab.train.optim`."""


@dataclass
class TrainConfig:
    """Options shared by SFT and DPO."""

    model: str = "google/medgemma-4b-it"
    """Base model: hub id, local folder, or ``tiny`` (the offline test model)."""
    data: Path = Path("train.jsonl")
    """Training records (JSONL)."""
    eval_data: Path | None = None
    """Optional evaluation records (JSONL), scored every ``eval_steps``."""
    output_dir: Path = Path("runs/medvlab")
    """Where checkpoints, the adapter, metrics and curves go."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_alpha: int = 32
    """LoRA scaling alpha."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = "all-linear"
    """``all-linear`` or a comma-separated list of module names (e.g. ``q_proj,v_proj``)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full and saved with the adapter, e.g. ``lm_head`` (flag: comma-separated)."""
    freeze_vision: bool = False
    """Keep the vision tower and projector frozen: LoRA only on the language model."""
    qlora: bool = False
    """Load the base model in 4-bit NF4 (CUDA + bitsandbytes); vision tower and projector stay unquantized."""
    epochs: float = 1.0
    """Passes over the data (ignored when ``max_steps`` > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: use ``epochs``)."""
    batch_size: int = 1
    """Records per device per step."""
    grad_accum: int = 8
    """Gradient accumulation steps."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    lr_scheduler: str = "linear"
    """transformers scheduler name (linear, cosine, constant, ...)."""
    warmup_ratio: float = 0.03
    """Fraction of steps for warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    logging_steps: int = 10
    """Log (and write metrics) every N steps."""
    save_steps: int = 100
    """Checkpoint every N steps (resume picks the last one)."""
    eval_steps: int = 100
    """Evaluate every N steps when ``eval_data`` is given."""
    save_total_limit: int = 2
    """Checkpoints kept on disk."""
    seed: int = 42
    """Random seed."""
    device: str | None = None
    """Device override (cuda, npu, mps, cpu, ...)."""
    dtype: str | None = None
    """bfloat16 / float16 / float32; default per device."""
    gradient_checkpointing: bool = False
    """Trade compute for memory."""
    window: str | None = None
    """Window for DICOM/NIfTI images (as at inference; None: per modality)."""
    max_slices: int = 8
    """Most slices of a volume per record, sampled as at inference."""
    group_by_length: bool = True
    """Batch records of similar length together (less padding)."""
    cache_images: bool = True
    """Decode and window each image file once for the whole run."""
    resume: bool = True
    """Resume from the last checkpoint in ``output_dir`` when there is one."""
    overwrite: bool = False
    """Delete a previous run in ``output_dir`` and start over (a finished run is otherwise kept)."""
    optim: Literal["adamw_torch", "galore_adamw", "adamw_8bit", "paged_adamw_8bit"] = "adamw_torch"
    """Optimizer: adamw_torch, galore_adamw (GaLore, less memory), adamw_8bit / paged_adamw_8bit (CUDA)."""
    distributed: Literal["ddp", "fsdp", "zero2", "zero3"] = "ddp"
    """Under torchrun / accelerate launch: ddp (copies), fsdp or zero2/zero3 (DeepSpeed) sharding."""

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.output_dir = Path(self.output_dir)
        self.eval_data = Path(self.eval_data) if self.eval_data else None
        for name in (
            "lora_rank",
            "lora_alpha",
            "batch_size",
            "grad_accum",
            "logging_steps",
            "save_steps",
            "eval_steps",
            "max_slices",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1, got {getattr(self, name)}.", f"Set --{_flag(name)}."
                )
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"learning_rate {self.learning_rate} is out of range.", "Use e.g. 2e-4.")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.", "Use e.g. 0.05.")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("Neither epochs nor max_steps is positive.", "Set --epochs or --max-steps.")
        if self.optim not in OPTIMIZERS:
            raise ConfigError(f"Unknown optimizer '{self.optim}'.", f"Use one of {', '.join(OPTIMIZERS)}.")
        if self.distributed not in ("ddp", "fsdp", "zero2", "zero3"):
            raise ConfigError(
                f"Unknown distributed strategy '{self.distributed}'.", "Use ddp, fsdp, zero2 or zero3."
            )


@dataclass
class SFTTrainConfig(TrainConfig):
    """Supervised fine-tuning on (image, conversation) records."""

    completion_only_loss: bool = True
    """Loss on the assistant's answer only, else on the prompt text too (image tokens, padding: never)."""
    max_length: int | None = None
    """Truncate longer sequences (None: no truncation; image tokens are never cut)."""
    packing: bool = False
    """Pack several records per sequence of up to max_length (default 2048) tokens, attention per record."""


@dataclass
class DPOTrainConfig(TrainConfig):
    """Direct preference optimisation on (image, prompt, chosen, rejected) records."""

    beta: float = 0.1
    """Strength of the KL penalty towards the reference model."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    """DPO loss variant: sigmoid, ipo or hinge (TRL names)."""
    learning_rate: float = 5e-6
    """Peak learning rate (DPO wants a much smaller one than SFT)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ConfigError(f"beta must be positive, got {self.beta}.", "Use e.g. 0.1.")


C = TypeVar("C", bound=TrainConfig)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def resolve(cls: type[C], config_file: Path | None = None, **flags: Any) -> C:
    """Defaults, then the YAML file, then flags that were given (not None)."""
    values: dict[str, Any] = {}
    known = {f.name for f in fields(cls)}
    if config_file is not None:
        if not config_file.exists():
            raise ConfigError(f"The config file '{config_file}' does not exist.", "Check the --config path.")
        loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"'{config_file}' must hold a mapping of option: value.", "See docs/training.md."
            )
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ConfigError(
                f"'{config_file}' has unknown option(s): {', '.join(unknown)}.",
                f"Valid options: {', '.join(sorted(known))}.",
            )
        values.update(loaded)
    values.update({k: v for k, v in flags.items() if v is not None and k in known})
    return cls(**values)


def write_resolved(config: TrainConfig, folder: Path) -> Path:
    """Save the configuration actually used, next to the outputs (rank 0 only in a multi-process job)."""
    path = folder / RESOLVED_NAME
    if os.environ.get("RANK", "0") != "0":  # see medvlab.train.distributed: rank 0 writes
        return path
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: _plain(v) for k, v in asdict(config).items()}
    data["kind"] = type(config).__name__
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """Paths (also inside lists, e.g. federated sites) as strings, for YAML."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
