"""Direct preference optimisation recipe (LoRA / QLoRA) over TRL's DPOTrainer.

Preferences typically come from clinicians' feedback in the lab (``medvlab feedback export --format dpo``).
With a LoRA adapter the frozen base serves as the reference model, so no second copy is loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medvlab.config import PromptOptions
from medvlab.train.config import DPOTrainConfig, write_resolved
from medvlab.train.data import ImageCache, load_dpo
from medvlab.train.metrics import MetricsWriter, write_csv_and_plot
from medvlab.train.modeling import load_for_training, lora_config
from medvlab.train.sft import last_checkpoint

logger = logging.getLogger(__name__)


def run_dpo(cfg: DPOTrainConfig, cache_dir: Path | None = None) -> Path:
    """Train a LoRA adapter on preferences; returns the adapter folder."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    out = cfg.output_dir
    write_resolved(cfg, out)

    # 1. model
    model, processor, device = load_for_training(cfg, cache_dir)

    # 2. data: prompt (with images) / chosen / rejected, validated line by line
    cache = ImageCache(PromptOptions(window=cfg.window, max_slices=cfg.max_slices), enabled=cfg.cache_images)
    train = Dataset.from_list(load_dpo(cfg.data, cache))
    evals = Dataset.from_list(load_dpo(cfg.eval_data, cache)) if cfg.eval_data else None
    logger.info("%d preference pairs", len(train))

    # 3. trainer
    args = DPOConfig(
        output_dir=str(out),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the steps
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if evals is not None else "no",
        eval_steps=cfg.eval_steps,
        seed=cfg.seed,
        bf16=device.dtype == "bfloat16",
        fp16=device.dtype == "float16",
        use_cpu=device.kind == "cpu",
        gradient_checkpointing=cfg.gradient_checkpointing,
        report_to=[],
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=processor,
        peft_config=lora_config(cfg),
        callbacks=[MetricsWriter(out)],
    )

    # 4. train (resumable) and 5. save
    trainer.train(resume_from_checkpoint=last_checkpoint(out) if cfg.resume else None)
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))
    processor.save_pretrained(str(adapter_dir))
    write_resolved(cfg, adapter_dir)
    write_csv_and_plot(out)
    return adapter_dir
