"""Training metrics to JSONL + CSV as they arrive, and a training-curve PNG at the end."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

CURVES = (
    "loss",
    "eval_loss",
    "rewards/accuracies",
    "rewards/margins",
    "eval_rewards/accuracies",
    "eval_closed_accuracy",  # medvlab.train.callbacks: VQA eval during training
    "eval_open_f1",
)
GRPO_CURVES = ("loss", "reward", "kl", "eval_reward")
"""GRPO's curves (TRL's log names); each reward's ``rewards/<name>/mean`` is drawn beside them."""


def reward_curves(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The per-reward curves GRPO logged (``rewards/<name>/mean``), in name order."""
    return tuple(sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")}))


class MetricsWriter(TrainerCallback):
    """Appends every log event to ``metrics.jsonl``; rewrites ``metrics.csv`` and the PNG at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.jsonl = folder / "metrics.jsonl"
        folder.mkdir(parents=True, exist_ok=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # the last step is always logged, so a run shorter than logging_steps still has metrics and curves
        if state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, "epoch": round(float(state.epoch or 0), 4), **logs}
        with self.jsonl.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            write_csv_and_plot(self.folder)


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_csv_and_plot(folder: Path) -> Path | None:
    rows = read_metrics(folder)
    if not rows or os.environ.get("RANK", "0") != "0":  # rank 0 writes (medvlab.train.distributed)
        return None
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("step", "epoch"), k))
    with (folder / "metrics.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return plot_curves(rows, folder / "training_curves.png")


def plot_curves(rows: list[dict[str, Any]], path: Path, curves: tuple[str, ...] = CURVES) -> Path | None:
    """``training_curves.png``: one panel per metric of ``curves`` that has values, titled by its name."""
    import matplotlib.pyplot as plt

    fig = curves_figure(rows, curves)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_figure(
    rows: list[dict[str, Any]],
    curves: tuple[str, ...] = CURVES,
    titles: Mapping[str, str] | None = None,
    x_label: str = "step",
    font_file: str | None = None,
) -> Any:
    """The curves as a matplotlib figure (None without values): panel titles from ``titles`` (the metric's
    name otherwise), drawn with ``font_file`` when given (a CJK font for Chinese titles)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties

    series = {k: [(r["step"], float(r[k])) for r in rows if k in r and "step" in r] for k in curves}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    font = FontProperties(fname=font_file) if font_file else None
    cols = min(len(series), 4)
    rows_n = -(-len(series) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for ax in axes.flat[len(series) :]:
        ax.axis("off")
    for ax, (name, points) in zip(axes.flat, series.items(), strict=False):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.5)
        ax.set_title((titles or {}).get(name, name), fontproperties=font)
        ax.set_xlabel(x_label, fontproperties=font)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
