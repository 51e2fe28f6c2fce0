"""Sampled preference pairs: N answers per prompt, scored by the GRPO rewards, best vs worst as a DPO pair.

Read it top to bottom: rewards -> prompts -> model -> sample and score -> pairs (+ clinician feedback).
Answers are generated through the lab's own backend (:func:`medvlab.vlm.engine.load_backend`), so the
model sees exactly what it sees at inference, and MedGemma's thinking span never reaches a reward.
Each answer has its own seed, so a run is reproducible. The output is what ``medvlab train dpo`` reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvlab.config import GenerationOptions, PromptOptions
from medvlab.errors import ConfigError, DataError
from medvlab.train.data import ImageCache, load_dpo, read_jsonl
from medvlab.train.grpo_config import SampleConfig
from medvlab.train.prompts import load_prompts
from medvlab.train.rewards import Reward, resolve_rewards

logger = logging.getLogger(__name__)


@dataclass
class SampleSummary:
    prompts: int
    pairs: int
    tied: int
    feedback_pairs: int
    output: Path
    scores: Path | None


def with_pictures(messages: list[dict[str, Any]], pictures: list[Any]) -> list[dict[str, Any]]:
    """The record's image placeholders filled with its (windowed) pictures, in order, for the backend."""
    it = iter(pictures)
    return [
        {
            "role": m["role"],
            "content": [
                {"type": "image", "image": next(it)} if p["type"] == "image" else p for p in m["content"]
            ],
        }
        for m in messages
    ]


def score_answers(
    answers: list[str], fields: dict[str, Any], rewards: list[tuple[Reward, float]]
) -> tuple[list[float], dict[str, list[float]]]:
    """(weighted total per answer, each reward's scores) for the answers to one record."""
    per = {rw.name: rw(answers, **{k: [v] * len(answers) for k, v in fields.items()}) for rw, _ in rewards}
    totals = [sum(w * per[rw.name][i] for rw, w in rewards) for i in range(len(answers))]
    return totals, per


def feedback_pairs(path: Path, cache: ImageCache) -> list[dict[str, Any]]:
    """Clinician pairs from ``feedback export --format dpo``: validated, image paths made absolute."""
    if not path.is_file():
        raise DataError(f"The feedback file '{path}' does not exist.", "Check the --feedback path.")
    load_dpo(path, cache)  # every record checked (fields, images) before any is used
    out = []
    for _, rec in read_jsonl(path):
        images = rec.get("images") or []
        images = [images] if isinstance(images, str) else images
        rec = {
            **rec,
            "images": [str(p if Path(p).is_absolute() else (path.parent / p).resolve()) for p in images],
        }
        rec["source"] = "feedback"
        out.append(rec)
    return out


def run_sample(
    cfg: SampleConfig,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleSummary:
    """Sample ``cfg.n`` answers per prompt; write best/worst pairs (and feedback pairs) to ``cfg.output``."""
    from medvlab.vlm.engine import load_backend

    # 1. rewards and data first: a bad plugin or record fails in a second, before the model loads
    rewards = resolve_rewards(cfg.rewards, [Path(p) for p in cfg.reward_plugins])
    cache = ImageCache(PromptOptions(window=cfg.window, max_slices=cfg.max_slices))
    records = load_prompts(cfg.data, cache)
    extra = feedback_pairs(cfg.feedback, cache) if cfg.feedback else []
    if cfg.adapter is not None and not (cfg.adapter / "adapter_config.json").is_file():
        raise ConfigError(
            f"'{cfg.adapter}' is not an adapter folder (no adapter_config.json).",
            "Pass the adapter folder a training run wrote, e.g. runs/sft/adapter.",
        )
    if cfg.output.resolve() == cfg.data.resolve():
        raise DataError(f"--output '{cfg.output}' is the --data file.", "Write the pairs to another file.")

    # 2. the model, through the lab's backend (adapter applied as at inference)
    backend = load_backend(
        cfg.model,
        cfg.device,
        cfg.dtype,
        adapter=str(cfg.adapter) if cfg.adapter else None,
        cache_dir=cache_dir,
        max_batch_size=1,
    )

    # 3. sample n answers per prompt and score them; the best and the worst make a pair unless all tie
    pairs: list[dict[str, Any]] = []
    scored: list[dict[str, Any]] = []
    tied = 0
    keys = sorted({k for r in records for k in r["fields"]})  # a field a record lacks: None (as in GRPO)
    for i, rec in enumerate(records):
        messages = with_pictures(rec["prompt"], rec["images"])
        answers = []
        for k in range(cfg.n):
            options = GenerationOptions(
                max_new_tokens=cfg.max_new_tokens,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                seed=cfg.seed + i * cfg.n + k,
            )
            answers.append("".join(backend.stream(messages, options)).strip())
        totals, per = score_answers(answers, {k: rec["fields"].get(k) for k in keys}, rewards)
        scored.append({"line": i + 1, "answers": answers, "total": totals, "rewards": per})
        usable = [j for j, a in enumerate(answers) if a]  # an empty answer cannot be a DPO side
        best = max(usable, key=lambda j: totals[j], default=None)
        worst = min(usable, key=lambda j: totals[j], default=None)
        if best is None or worst is None or totals[best] == totals[worst] or answers[best] == answers[worst]:
            tied += 1
        else:
            pairs.append(
                {
                    "prompt": rec["raw_prompt"],
                    "chosen": answers[best],
                    "rejected": answers[worst],
                    "images": rec["image_paths"],
                    "chosen_score": round(totals[best], 6),
                    "rejected_score": round(totals[worst], 6),
                    "source": "sampled",
                }
            )
        if progress:
            progress(i + 1, len(records))

    # 4. write the pairs (sampled, then clinicians'), and every scored answer beside them
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    rows = pairs + extra
    cfg.output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    scores_path = None
    if cfg.scores:
        scores_path = cfg.output.with_name(cfg.output.stem + ".scores.jsonl")
        scores_path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored), encoding="utf-8"
        )
    logger.info(
        "%d pairs from %d prompts (%d all tied), %d from feedback", len(pairs), len(records), tied, len(extra)
    )
    return SampleSummary(len(records), len(pairs), tied, len(extra), cfg.output, scores_path)
