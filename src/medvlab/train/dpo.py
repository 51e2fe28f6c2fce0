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
from medvlab.train.modeling import load_for_training, lora_config, trainer_arguments
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
        **trainer_arguments(cfg, device, has_eval=evals is not None),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
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
