"""Callbacks every recipe adds: the project's VQA evaluation during training, and the rank trace of tests.

``--eval-data FILE --eval-steps N``: every N optimizer steps (and at the last step) the model being trained
answers the eval questions greedily, and :func:`medvlab.train.evaluate.evaluate` - the scorer of
``medvlab eval`` - gives closed-question accuracy and open-question token F1 / recall. The numbers join
``metrics.jsonl`` as ``eval_closed_accuracy`` / ``eval_open_f1`` / ``eval_open_recall`` (curves beside the
loss in ``training_curves.png``); each evaluation's ``predictions.csv`` and ``summary.json`` go to
``<output_dir>/eval/step-N/``. An eval question is a training-format record: the conversation up to the
last user turn is the prompt, the last assistant answer (DPO: the chosen one) the reference; a yes/no
reference (English or Chinese) makes it a closed question, as in ``medvlab eval``.

Written as a TrainerCallback rather than through ``compute_metrics`` because the HF Trainer's evaluation
is teacher-forced (one forward pass on the reference): it cannot show what the model would answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from transformers import TrainerCallback

from medvlab.train.config import TrainConfig
from medvlab.train.distributed import sharded, trace_callbacks, world
from medvlab.train.evaluate import VQAItem, evaluate, yes_no
from medvlab.train.metrics import MetricsWriter

logger = logging.getLogger(__name__)

EVAL_MAX_NEW_TOKENS = 48
"""Answer length cap of the evaluation during training (short VQA answers, as ``medvlab eval``)."""
METRICS = ("closed_accuracy", "open_f1", "open_recall")


@dataclass(frozen=True)
class EvalPrompt:
    """One eval question: chat messages up to the question (image parts in place), pictures, reference."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    answer: str


def _text(messages: list[dict[str, Any]]) -> str:
    return " ".join(p["text"] for m in messages for p in m["content"] if p.get("type") == "text").strip()


def sft_prompts(records: list[dict[str, Any]]) -> list[EvalPrompt]:
    """SFT records (from :func:`~medvlab.train.data.load_sft`): the last assistant turn is the reference."""
    out = []
    for r in records:
        messages = r["messages"]
        out.append(EvalPrompt(messages[:-1], r["images"], _text(messages[-1:])))
    return out


def dpo_prompts(records: list[dict[str, Any]]) -> list[EvalPrompt]:
    """Preference records (from :func:`~medvlab.train.data.load_dpo`): the chosen answer is the reference."""
    return [EvalPrompt(r["prompt"], r["images"], _text(r["chosen"])) for r in records]


def grpo_prompts(records: list[dict[str, Any]]) -> list[EvalPrompt]:
    """GRPO prompt records (``medvlab.train.prompts.load_prompts``) that carry a reference answer."""
    return [
        EvalPrompt(r["prompt"], r["images"], str(r["fields"]["reference"]))
        for r in records
        if r.get("fields", {}).get("reference")
    ]


class VQAEvalCallback(TrainerCallback):
    """Every ``every`` steps: generate answers to ``prompts`` and score them like ``medvlab eval``."""

    def __init__(
        self,
        prompts: list[EvalPrompt],
        processor: Any,
        every: int,
        folder: Path,
        strategy: str = "ddp",
        max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    ) -> None:
        self.prompts, self.processor, self.every, self.folder = prompts, processor, every, folder
        self.max_new_tokens = max_new_tokens
        # Sharded weights (FSDP, ZeRO-3): every rank takes part in each forward pass, so all ranks
        # generate, with synced_gpus so that no rank stops before the others.
        self.synced = sharded(strategy)
        self.writer = MetricsWriter(folder)
        self.items = [
            VQAItem(str(i), Path(), _text(p.messages[-1:]), p.answer, yes_no(p.answer) is not None)
            for i, p in enumerate(prompts)
        ]

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        step = state.global_step
        if step % self.every == 0 or step == state.max_steps:
            self.run(args, state, control, kw["model"])

    def run(self, args: Any, state: Any, control: Any, model: Any) -> dict[str, float]:
        """Evaluate now; returns (and logs) the metrics row on rank 0, ``{}`` elsewhere."""
        import torch

        main = world().main
        if not main and not self.synced:
            return {}
        model = getattr(model, "module", model)  # the DDP wrapper's forward would sync buffers
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if main:
                    out = self.folder / "eval" / f"step-{state.global_step}"
                    summary = evaluate(self.items, {"model": lambda item: self.answer(model, item)}, out)
                else:
                    for item in self.items:
                        self.answer(model, item)
                    return {}
        finally:
            model.train(was_training)
        row = {f"eval_{k}": float(v) for k, v in summary["model"].items() if k in METRICS and v is not None}
        logger.info("step %d eval: %s", state.global_step, ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
        self.writer.on_log(args, state, control, logs=row)
        return row

    def answer(self, model: Any, item: VQAItem) -> str:
        """Greedy answer of ``model`` to eval question ``item``."""
        prompt = self.prompts[int(item.qid)]
        text = self.processor.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(
            text=[text], images=[prompt.images] if prompt.images else None, return_tensors="pt"
        )
        param = next(model.parameters())
        inputs = inputs.to(param.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(param.dtype)
        output = model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            use_cache=True,
            synced_gpus=self.synced,
        )
        new = output[0, inputs["input_ids"].shape[1] :]
        return str(self.processor.decode(new, skip_special_tokens=True)).strip()


def train_callbacks(
    cfg: TrainConfig, processor: Any, eval_prompts: list[EvalPrompt]
) -> list[TrainerCallback]:
    """What a recipe adds beside its MetricsWriter: VQA eval (when there are eval prompts), the rank trace."""
    out: list[TrainerCallback] = []
    if eval_prompts:
        out.append(
            VQAEvalCallback(
                eval_prompts,
                processor,
                cfg.eval_steps,
                cfg.output_dir,
                getattr(cfg, "distributed", "ddp"),
            )
        )
    return out + trace_callbacks(cfg.output_dir)
