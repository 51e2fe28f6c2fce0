"""A training run's output folder: what a second run into it does, cleaning up a failed start, the summary.

* a finished run (``run_summary.json`` present) is not trained again by accident: asking for no more
  steps/epochs than it did is an error saying how to start over (``--overwrite``) or continue (a larger
  ``--max-steps`` / ``--epochs``, resumed from its last checkpoint);
* ``--overwrite`` deletes a previous medvlab run in the folder (never a folder that is not one);
* a run that fails before its first checkpoint leaves no half-made folder behind;
* ``run_summary.json`` records what the run did; the CLI shows it as a table;
* the progress bar shows the loss instead of printing every log as a Python dict.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medvlab.config import PromptOptions
from medvlab.errors import ConfigError
from medvlab.train.config import RESOLVED_NAME, TrainConfig
from medvlab.train.data import ImageCache, load_dpo, load_sft
from medvlab.train.jobs import SUMMARY_NAME
from medvlab.vlm.prompting import ImagePart

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
RUN_MARKERS = (RESOLVED_NAME, SUMMARY_NAME, "metrics.jsonl")
"""Files that make a folder recognisably a medvlab training run."""


def read_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / SUMMARY_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_run_folder(folder: Path) -> bool:
    return any((folder / m).exists() for m in RUN_MARKERS) or any(folder.glob("checkpoint-*"))


def last_checkpoint(folder: Path) -> str | None:
    """The ``checkpoint-N`` folder with the largest N (as transformers' get_last_checkpoint; no torch)."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return str(max(found)[1]) if found else None


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def prepare_output(cfg: TrainConfig) -> str | None:
    """Check ``cfg.output_dir`` before anything is loaded; returns the checkpoint to resume from, if any."""
    from medvlab.train.optim import EIGHT_BIT, check_optimizer

    kind = None
    if cfg.optim in EIGHT_BIT:  # only then is it worth importing torch to look at the device
        from medvlab.devices import resolve_device

        kind = resolve_device(cfg.device, cfg.dtype).kind
    check_optimizer(cfg, kind)  # e.g. no bitsandbytes, or 8-bit without CUDA: fail before the model loads
    out = cfg.output_dir
    if out.exists() and not out.is_dir():
        raise ConfigError(f"The output folder '{out}' is a file.", "Choose another --output-dir.")
    if getattr(cfg, "overwrite", False) and out.is_dir() and any(out.iterdir()):
        if not is_run_folder(out):
            raise ConfigError(
                f"--overwrite refuses to empty '{out}': it is not a medvlab training run.",
                "Choose another --output-dir.",
            )
        if _main_process():
            logger.info("--overwrite: deleting the previous run in %s", out)
            shutil.rmtree(out)
        return None
    done = read_summary(out)
    if done is not None:
        steps, epoch = int(done.get("global_step", 0)), float(done.get("epoch", 0.0))
        more = cfg.max_steps > steps if cfg.max_steps > 0 else cfg.epochs > epoch + 1e-6
        if not more:
            asked = f"{cfg.max_steps} steps" if cfg.max_steps > 0 else f"{cfg.epochs:g} epoch(s)"
            raise ConfigError(
                f"'{out}' already holds a finished run ({steps} steps, {epoch:g} epochs; asked for {asked}).",
                "Pass --overwrite to start over, or a larger --max-steps / --epochs to continue it, "
                "or choose another --output-dir.",
            )
        checkpoint = last_checkpoint(out)
        if checkpoint is None or not cfg.resume:
            raise ConfigError(
                f"'{out}' holds a finished run with no checkpoint to continue from.",
                "Pass --overwrite to start over, or choose another --output-dir.",
            )
        logger.info("continuing the finished run in %s from %s", out, checkpoint)
        return checkpoint
    return last_checkpoint(out) if cfg.resume else None


@contextmanager
def clean_on_failure(folder: Path, fresh: bool) -> Iterator[None]:
    """Remove ``folder`` if it is ``fresh`` (made by this run) and the run fails before any checkpoint."""
    try:
        yield
    except BaseException:
        if fresh and _main_process() and folder.is_dir() and not any(folder.glob("checkpoint-*")):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def write_summary(folder: Path, trainer: Any, result: Any, records: int, saved: Path) -> dict[str, Any]:
    """``run_summary.json``: steps, epochs, losses, time, throughput and the files written."""
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    metrics = dict(getattr(result, "metrics", {}) or {})
    summary: dict[str, Any] = {
        "global_step": int(state.global_step),
        "epoch": round(float(state.epoch or 0.0), 4),
        "records": records,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_loss": metrics.get("train_loss"),
        "runtime_s": metrics.get("train_runtime"),
        "samples_per_s": metrics.get("train_samples_per_second"),  # sequences (packs, with --packing)
        "records_per_s": _records_per_s(metrics, records, trainer),
        "saved": str(saved),
        "files": sorted(
            n
            for n in ("metrics.jsonl", "metrics.csv", "training_curves.png", RESOLVED_NAME)
            if (folder / n).exists()
        ),
    }
    if _main_process():
        (folder / SUMMARY_NAME).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _records_per_s(metrics: dict[str, Any], records: int, trainer: Any) -> float | None:
    per_s = metrics.get("train_samples_per_second")
    sequences = len(getattr(trainer, "train_dataset", None) or [])
    return None if per_s is None or not sequences else round(per_s * records / sequences, 3)


def quiet_progress(trainer: Any) -> None:
    """Keep the progress bar but show the loss on it, instead of printing each log as a Python dict."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LossProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            bar = getattr(self, "training_bar", None)
            if state.is_world_process_zero and bar is not None and logs and "loss" in logs:
                bar.set_postfix(loss=f"{float(logs['loss']):.4g}", refresh=False)

    had_bar = trainer.pop_callback(ProgressCallback) is not None
    trainer.pop_callback(PrinterCallback)
    if had_bar:
        trainer.add_callback(LossProgress())


class _PathsOnly(ImageCache):
    """Checks that each image path exists without decoding it (the run decodes them, once)."""

    def parts(self, path: Path) -> list[ImagePart]:
        return [ImagePart(image=None, label=None, slice_index=0)]  # type: ignore[arg-type]


def preflight(cfg: TrainConfig, kind: str) -> None:
    """Everything that can fail in a second, before torch and the model load: output folder, optimizer
    packages, and the data files (JSON, fields, roles, <image> placeholders, image paths)."""
    prepare_output(cfg)
    load = load_dpo if kind == "dpo" else load_sft
    cache = _PathsOnly(PromptOptions(), enabled=False)
    for path in (cfg.data, cfg.eval_data):
        if path is not None:
            load(path, cache)
