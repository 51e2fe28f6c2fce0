"""Memory options: GaLore and 8-bit AdamW, through transformers' own ``optim`` names.

* ``--optim galore_adamw`` (galore-torch): GaLore projects the gradients of full weight matrices to a low
  rank, so the *full* language-model linear layers are trained with about LoRA's optimizer memory. As in
  LLaMA-Factory, it replaces LoRA (no adapter): the vision tower, projector and embeddings stay frozen and
  the run saves a full model folder (``<output_dir>/model``), servable with ``ask/serve --model``.
* ``--optim adamw_8bit`` / ``paged_adamw_8bit`` (bitsandbytes): optimizer states in 8 bits; CUDA only.
* ``--gradient-checkpointing``: recompute activations in the backward pass (a TrainingArguments flag).

Each option fails in one clear line where it cannot run.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from medvlab.devices import DeviceInfo, has_module
from medvlab.errors import ConfigError, DeviceError
from medvlab.train.config import TrainConfig

logger = logging.getLogger(__name__)

GALORE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
"""The weight matrices GaLore trains (and projects): the language model's attention and MLP linears."""
EIGHT_BIT = ("adamw_8bit", "paged_adamw_8bit")
GALORE_ARGS = "rank=128,update_proj_gap=200,scale=0.25,proj_type=std"
"""GaLore's settings, as in the GaLore paper's fine-tuning runs."""


def full_weights(cfg: TrainConfig) -> bool:
    """True when the optimizer trains full weights instead of a LoRA adapter."""
    return cfg.optim == "galore_adamw"


def optimizer_arguments(cfg: TrainConfig, device: DeviceInfo) -> dict[str, Any]:
    """The TrainingArguments for ``cfg.optim``; raises with the fix where it cannot run here."""
    check_optimizer(cfg, device.kind)
    if cfg.optim == "galore_adamw":
        return {"optim": "galore_adamw", "optim_target_modules": GALORE_TARGETS, "optim_args": GALORE_ARGS}
    return {"optim": cfg.optim}


def check_optimizer(cfg: TrainConfig, device_kind: str | None) -> None:
    """Raise with the fix where ``cfg.optim`` cannot run (``device_kind`` None: packages only, no torch)."""
    if cfg.optim == "galore_adamw":
        if not has_module("galore_torch"):
            raise ConfigError(
                "--optim galore_adamw needs the galore-torch package.",
                "pip install 'medvlab[galore]', or use --optim adamw_torch.",
            )
        if cfg.qlora:
            raise ConfigError(
                "GaLore trains full weights and cannot run on a 4-bit (--qlora) model.",
                "Drop --qlora, or use --optim adamw_torch / adamw_8bit with QLoRA.",
            )
    if cfg.optim in EIGHT_BIT:
        if not has_module("bitsandbytes"):
            raise ConfigError(
                f"--optim {cfg.optim} needs bitsandbytes, which is not installed.",
                "pip install 'medvlab[qlora]' on a machine with a CUDA GPU, or use --optim adamw_torch "
                "(or galore_adamw).",
            )
        if device_kind not in (None, "cuda"):
            raise DeviceError(
                f"8-bit optimizers (--optim {cfg.optim}) need a CUDA GPU; this run is on {device_kind}.",
                "Run on a CUDA GPU, or use --optim adamw_torch / galore_adamw.",
            )


def prepare_full_weights(model: Any) -> int:
    """Freeze everything but GaLore's target weights; returns the number of trainable parameters."""
    pattern = re.compile(GALORE_TARGETS)
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = 0
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if pattern.fullmatch(name) and weight is not None:
            weight.requires_grad_(True)
            trainable += weight.numel()
    if not trainable:
        raise ConfigError(
            "GaLore found no language-model linear layers (q_proj ... down_proj) in this model.",
            "Use --optim adamw_torch (LoRA) for this model.",
        )
    logger.info("GaLore: training %d full weights of the language model", trainable)
    return trainable
