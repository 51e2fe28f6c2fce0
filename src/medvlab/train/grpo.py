"""GRPO recipe (LoRA / QLoRA) over TRL's GRPOTrainer: sample a group of answers per image + question,
score them with medical rewards, and push the policy towards the better ones.

Read it top to bottom: config -> rewards -> model -> data -> trainer -> train -> save. The data are the
SFT records (reference answers optional, see :mod:`medvlab.train.prompts`), windowed as at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from medvlab.config import PromptOptions
from medvlab.devices import resolve_device
from medvlab.train.callbacks import grpo_prompts, train_callbacks
from medvlab.train.config import write_resolved
from medvlab.train.data import ImageCache
from medvlab.train.distributed import is_main_process
from medvlab.train.grpo_config import GrpoTrainConfig, check_vllm
from medvlab.train.metrics import GRPO_CURVES, MetricsWriter, plot_curves, read_metrics, write_csv_and_plot
from medvlab.train.modeling import load_for_training, lora_config, trainer_arguments
from medvlab.train.optim import full_weights, prepare_full_weights
from medvlab.train.prompts import load_prompts
from medvlab.train.rewards import Reward, answer_text, resolve_rewards
from medvlab.train.runs import clean_on_failure, prepare_output, quiet_progress, write_summary

logger = logging.getLogger(__name__)


def trl_reward(rw: Reward, records: list[dict[str, Any]]) -> Callable[..., list[float]]:
    """``rw`` as a TRL reward function: the dataset carries each record's index, the fields stay here."""
    keys = sorted({k for r in records for k in r["fields"]})

    def score(prompts: list[Any], completions: list[Any], idx: list[int], **_: Any) -> list[float]:
        fields = {k: [records[int(i)]["fields"].get(k) for i in idx] for k in keys}
        return rw([answer_text(c) for c in completions], **fields)

    score.__name__ = rw.name  # TRL logs rewards/<name>/mean under the function's name
    return score


def run_grpo(cfg: GrpoTrainConfig, cache_dir: Path | None = None) -> Path:
    """Train a LoRA adapter with GRPO; returns the adapter folder (``<output_dir>/adapter``)."""
    # 1. output folder and rewards (plugins imported and checked now: a bad one fails before the model loads)
    out = cfg.output_dir
    fresh = not out.exists()
    resume = prepare_output(cfg)  # a finished run is not trained again by accident; --overwrite starts over
    rewards = resolve_rewards(cfg.rewards, [Path(p) for p in cfg.reward_plugins])
    logger.info("rewards: %s", ", ".join(f"{rw.name}={w:g} ({rw.source})" for rw, w in rewards))

    # 2. data: the same records, checks and windowing as SFT; the reference answer is optional
    cache = ImageCache(PromptOptions(window=cfg.window, max_slices=cfg.max_slices), enabled=cfg.cache_images)
    records = load_prompts(cfg.data, cache)
    eval_records = load_prompts(cfg.eval_data, cache) if cfg.eval_data else []
    everything = records + eval_records

    def dataset(rows: list[dict[str, Any]], offset: int) -> Any:
        from datasets import Dataset

        return Dataset.from_list(
            [{"prompt": r["prompt"], "images": r["images"], "idx": offset + i} for i, r in enumerate(rows)]
        )

    train_ds = dataset(records, 0)
    eval_ds = dataset(eval_records, len(records)) if eval_records else None
    with_reference = sum(bool(r["fields"]["reference"]) for r in records)
    logger.info("%d prompts (%d with a reference answer)", len(records), with_reference)

    # 3. model and processor, loaded like at inference (4-bit with --qlora)
    if cfg.use_vllm:  # vLLM rollouts: the package and a CUDA GPU, checked before the model loads
        check_vllm(resolve_device(cfg.device, cfg.dtype).kind)
    model, processor, device = load_for_training(cfg, cache_dir)
    if full_weights(cfg):  # GaLore trains full language-model weights instead of LoRA
        prepare_full_weights(model)

    # 4. trainer: TRL's GRPOTrainer; one reward function per --reward, weighted
    from trl import GRPOConfig, GRPOTrainer

    base = trainer_arguments(cfg, device, has_eval=eval_ds is not None)
    base["per_device_eval_batch_size"] = cfg.num_generations  # an eval batch holds whole groups
    args = GRPOConfig(
        **base,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        reward_weights=[w for _, w in rewards],
        use_vllm=cfg.use_vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        log_completions=cfg.log_completions,
        remove_unused_columns=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[cast(Any, trl_reward(rw, everything)) for rw, _ in rewards],
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=processor,
        peft_config=None if full_weights(cfg) else lora_config(cfg),
        callbacks=[MetricsWriter(out), *train_callbacks(cfg, processor, grpo_prompts(eval_records))],
    )
    quiet_progress(trainer)
    write_resolved(cfg, out)

    # 5. train, resuming from the last checkpoint (no half-made folder when it fails before a checkpoint)
    if resume:
        logger.info("resuming from %s", resume)
    with clean_on_failure(out, fresh):
        result = trainer.train(resume_from_checkpoint=resume)

    # 6. save the adapter with its processor and config; metrics CSV + curves (loss, reward, KL, each reward)
    adapter_dir = out / ("model" if full_weights(cfg) else "adapter")
    trainer.save_model(str(adapter_dir))
    if is_main_process():
        processor.save_pretrained(str(adapter_dir))
        write_csv_and_plot(out)
        per_reward = tuple(f"rewards/{rw.name}/mean" for rw, _ in rewards)
        plot_curves(read_metrics(out), out / "training_curves.png", curves=GRPO_CURVES + per_reward)
    write_resolved(cfg, adapter_dir)
    write_summary(out, trainer, result, len(records), adapter_dir)
    return adapter_dir
