"""Loading a model for training (optionally 4-bit), and the LoRA configuration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medvlab.devices import DeviceInfo, has_module, resolve_device
from medvlab.errors import ConfigError, DeviceError
from medvlab.train.config import TrainConfig
from medvlab.train.distributed import device_for_rank, quiet_other_ranks
from medvlab.train.distributed import trainer_arguments as distributed_arguments
from medvlab.train.optim import optimizer_arguments
from medvlab.vlm.loading import _classify_load_error, resolve_model_source

logger = logging.getLogger(__name__)

# Kept out of 4-bit quantization, by full module prefix and by name (transformers matches either form
# depending on version): the SigLIP vision tower, the multimodal projector and the output head.
QLORA_SKIP = [
    "model.vision_tower",
    "model.multi_modal_projector",
    "vision_tower",
    "multi_modal_projector",
    "lm_head",
]
LANGUAGE_LINEAR = r".*language_model.*\.({names})$"
DEFAULT_LINEAR = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"


def quantization_config(device: DeviceInfo) -> Any:
    """NF4 with double quantization; raises with the fix where bitsandbytes cannot run."""
    import torch
    from transformers import BitsAndBytesConfig

    if not has_module("bitsandbytes"):
        raise ConfigError(
            "QLoRA needs the bitsandbytes package.", "pip install bitsandbytes, or train without --qlora."
        )
    if device.kind != "cuda":
        raise DeviceError(
            f"QLoRA's 4-bit kernels are not available on {device.kind}.",
            "Run it on a CUDA GPU, or train plain LoRA without --qlora (same adapter format).",
        )
    compute = torch.bfloat16 if device.dtype == "bfloat16" else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=compute,
        llm_int8_skip_modules=QLORA_SKIP,
    )


def load_for_training(cfg: TrainConfig, cache_dir: Path | None = None) -> tuple[Any, Any, DeviceInfo]:
    """(model, processor, device) for ``cfg.model``, through the same resolution as inference."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    quiet_other_ranks()
    device = device_for_rank(resolve_device(cfg.device, cfg.dtype))  # accelerator LOCAL_RANK under torchrun
    source = resolve_model_source(cfg.model, cache_dir)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, device.dtype), "attn_implementation": "eager"}
    if cfg.qlora:
        kwargs["quantization_config"] = quantization_config(device)
        kwargs["device_map"] = {"": device.torch_device}
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise _classify_load_error(cfg.model, exc) from exc
    if cfg.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model.config.use_cache = False
    logger.info(
        "training %s on %s (%s%s)",
        cfg.model,
        device.torch_device,
        device.dtype,
        ", 4-bit" if cfg.qlora else "",
    )
    return model, processor, device


def lora_config(cfg: TrainConfig) -> Any:
    """LoRA on all linear layers (or the named ones); only the language model's when the vision is frozen."""
    from peft import LoraConfig

    names = DEFAULT_LINEAR if cfg.target_modules == "all-linear" else cfg.target_modules.replace(",", "|")
    if cfg.freeze_vision:
        target: Any = LANGUAGE_LINEAR.format(names=names)
    else:
        target = (
            "all-linear"
            if cfg.target_modules == "all-linear"
            else [n.strip() for n in cfg.target_modules.split(",")]
        )
    return LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=target,
        modules_to_save=cfg.modules_to_save or None,
        task_type="CAUSAL_LM",
    )


def trainer_arguments(cfg: TrainConfig, device: DeviceInfo, has_eval: bool) -> dict[str, Any]:
    """The transformers TrainingArguments both recipes share, from ``cfg`` and the device."""
    return {
        "output_dir": str(cfg.output_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the steps
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "logging_steps": cfg.logging_steps,
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": cfg.eval_steps,
        "seed": cfg.seed,
        "bf16": device.dtype == "bfloat16",
        "fp16": device.dtype == "float16",
        "use_cpu": device.kind == "cpu",
        "activation_checkpointing": cfg.gradient_checkpointing,  # transformers 5 name (gradient_* deprecated)
        "report_to": [],
        **distributed_arguments(getattr(cfg, "distributed", "ddp"), device),
        **optimizer_arguments(cfg, device),  # adamw_torch, GaLore or 8-bit (medvlab.train.optim)
    }
