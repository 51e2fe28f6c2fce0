"""Supervised fine-tuning recipe (LoRA / QLoRA) for image-text-to-text models, over TRL's SFTTrainer.

Read it top to bottom: config -> model -> data -> trainer -> train -> save.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvlab.config import PromptOptions
from medvlab.train.callbacks import sft_prompts, train_callbacks
from medvlab.train.collate import VisionSFTCollator
from medvlab.train.config import SFTTrainConfig, write_resolved
from medvlab.train.data import ImageCache, load_sft
from medvlab.train.distributed import is_main_process
from medvlab.train.metrics import MetricsWriter, write_csv_and_plot
from medvlab.train.modeling import load_for_training, lora_config, trainer_arguments
from medvlab.train.optim import full_weights, prepare_full_weights
from medvlab.train.packing import packed_inputs
from medvlab.train.runs import clean_on_failure, prepare_output, quiet_progress, write_summary

logger = logging.getLogger(__name__)


class IndexedCollator:
    """The dataset holds indices (and lengths, for length grouping); pictures stay in memory here."""

    def __init__(self, records: list[dict[str, Any]], inner: VisionSFTCollator) -> None:
        self.records, self.inner = records, inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return self.inner([self.records[int(e["idx"])] for e in examples])


def approx_length(record: dict[str, Any], tokens_per_image: int) -> int:
    """Sequence length estimate for grouping: text characters / 3 + image tokens."""
    chars = sum(len(p.get("text", "")) for m in record["messages"] for p in m["content"])
    return chars // 3 + tokens_per_image * len(record["images"])


def as_dataset(records: list[dict[str, Any]], tokens_per_image: int) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(
        {"idx": list(range(len(records))), "length": [approx_length(r, tokens_per_image) for r in records]}
    )


def last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def run_sft(cfg: SFTTrainConfig, cache_dir: Path | None = None, callbacks: Sequence[Any] = ()) -> Path:
    """Train a LoRA adapter; returns the adapter folder (``<output_dir>/adapter``).

    ``callbacks``: more TrainerCallbacks (e.g. federated learning's, which starts from the global adapter).
    """
    from trl import SFTConfig, SFTTrainer

    out = cfg.output_dir
    fresh = not out.exists()
    resume = prepare_output(cfg)  # a finished run is not trained again by accident; --overwrite starts over

    # 1. data first (bad data fails in a second, before the model loads): validated line by line;
    #    images windowed like at inference, decoded once
    cache = ImageCache(PromptOptions(window=cfg.window, max_slices=cfg.max_slices), enabled=cfg.cache_images)
    train_records = load_sft(cfg.data, cache)
    eval_records = load_sft(cfg.eval_data, cache) if cfg.eval_data else []

    # 2. model and processor, loaded like at inference (4-bit with --qlora)
    model, processor, device = load_for_training(cfg, cache_dir)
    if full_weights(cfg):  # GaLore trains full language-model weights instead of LoRA
        prepare_full_weights(model)
    per_image = int(getattr(processor, "image_seq_length", 256))
    all_records = train_records + eval_records
    collator: Any = IndexedCollator(
        all_records, VisionSFTCollator(processor, cfg.completion_only_loss, cfg.max_length)
    )
    train_ds = as_dataset(train_records, per_image)
    eval_ds = None
    if eval_records:
        eval_ds = as_dataset(eval_records, per_image).map(lambda r: {"idx": r["idx"] + len(train_records)})
    if cfg.packing:  # several records per sequence, attention per record (medvlab.train.packing)
        train_ds, eval_ds, collator = packed_inputs(model, processor, cfg, train_records, eval_records)
    logger.info(
        "%d training / %d eval records (%d image reads saved by the cache)",
        len(train_records),
        len(eval_records),
        cache.hits,
    )

    # 3. trainer: TRL's SFTTrainer with our collator (the dataset is already prepared)
    args = SFTConfig(
        **trainer_arguments(cfg, device, has_eval=eval_ds is not None),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        processing_class=processor,
        peft_config=None if full_weights(cfg) else lora_config(cfg),
        callbacks=[
            MetricsWriter(out),
            *train_callbacks(cfg, processor, sft_prompts(eval_records)),
            *callbacks,
        ],
    )

    quiet_progress(trainer)
    write_resolved(cfg, out)

    # 4. train, resuming from the last checkpoint when there is one
    if resume:
        logger.info("resuming from %s", resume)
    with clean_on_failure(out, fresh):  # no half-made folder when the run fails before a checkpoint
        result = trainer.train(resume_from_checkpoint=resume)

    # 5. save the adapter with its processor and config; metrics CSV + curves PNG; run summary
    adapter_dir = out / ("model" if full_weights(cfg) else "adapter")
    trainer.save_model(str(adapter_dir))
    if is_main_process():  # save_model above writes on rank 0 only (gathering shards on every rank)
        processor.save_pretrained(str(adapter_dir))
    write_resolved(cfg, adapter_dir)
    write_csv_and_plot(out)
    write_summary(out, trainer, result, len(train_records), adapter_dir)
    return adapter_dir
