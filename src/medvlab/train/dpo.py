"""Direct preference optimisation recipe (LoRA / QLoRA) over TRL's DPOTrainer.

Preferences typically come from clinicians' feedback in the lab (``medvlab feedback export --format dpo``).
With a LoRA adapter the frozen base serves as the reference model, so no second copy is loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medvlab.config import PromptOptions
from medvlab.train.callbacks import dpo_prompts, train_callbacks
from medvlab.train.config import DPOTrainConfig, write_resolved
from medvlab.train.data import ImageCache, load_dpo
from medvlab.train.distributed import is_main_process
from medvlab.train.metrics import MetricsWriter, write_csv_and_plot
from medvlab.train.modeling import load_for_training, lora_config, trainer_arguments
from medvlab.train.optim import full_weights, prepare_full_weights
from medvlab.train.runs import clean_on_failure, prepare_output, quiet_progress, write_summary

logger = logging.getLogger(__name__)


def run_dpo(cfg: DPOTrainConfig, cache_dir: Path | None = None) -> Path:
    """Train a LoRA adapter on preferences; returns the adapter folder."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    out = cfg.output_dir
    fresh = not out.exists()
    resume = prepare_output(cfg)  # a finished run is not trained again by accident; --overwrite starts over

    # 1. data first (bad data fails before the model loads): prompt (with images) / chosen / rejected
    cache = ImageCache(PromptOptions(window=cfg.window, max_slices=cfg.max_slices), enabled=cfg.cache_images)
    train_records = load_dpo(cfg.data, cache)
    eval_records = load_dpo(cfg.eval_data, cache) if cfg.eval_data else []

    # 2. model
    model, processor, device = load_for_training(cfg, cache_dir)
    if full_weights(cfg):  # GaLore trains full language-model weights instead of LoRA
        prepare_full_weights(model)
    train = Dataset.from_list(train_records)
    evals = Dataset.from_list(eval_records) if eval_records else None
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
        peft_config=None if full_weights(cfg) else lora_config(cfg),
        callbacks=[MetricsWriter(out), *train_callbacks(cfg, processor, dpo_prompts(eval_records))],
    )
    quiet_progress(trainer)
    write_resolved(cfg, out)

    # 4. train (resumable; no half-made folder when it fails before a checkpoint) and 5. save
    with clean_on_failure(out, fresh):
        result = trainer.train(resume_from_checkpoint=resume)
    adapter_dir = out / ("model" if full_weights(cfg) else "adapter")
    trainer.save_model(str(adapter_dir))
    if is_main_process():
        processor.save_pretrained(str(adapter_dir))
    write_resolved(cfg, adapter_dir)
    write_csv_and_plot(out)
    write_summary(out, trainer, result, len(train_records), adapter_dir)
    return adapter_dir
