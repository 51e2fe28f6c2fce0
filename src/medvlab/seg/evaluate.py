"""Dice and HD95 per case and per structure (MONAI metrics), written as CSV plus a summary."""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvlab.errors import ConfigError, ImageLoadError
from medvlab.imaging.types import MedImage
from medvlab.seg.data import case_name, expand, grayscale, label_values, load_label, load_volume, pair
from medvlab.seg.infer import volumes_ml

logger = logging.getLogger(__name__)


@dataclass
class CaseScore:
    case: str
    label: str
    dice: float
    hd95_mm: float
    pred_ml: float
    true_ml: float


def score_case(
    case: str,
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    names: Sequence[str],
) -> list[CaseScore]:
    """Scores of one case: ``pred`` and ``truth`` are label arrays on the same grid (values 1..N)."""
    from monai.metrics import compute_dice, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    if pred.shape != truth.shape:
        raise ImageLoadError(
            f"Case '{case}': prediction {pred.shape} and label {truth.shape} differ in shape.",
            "Compare a prediction with the label of the same image (same grid).",
        )
    n = len(names) + 1
    p = one_hot(torch.from_numpy(pred.astype(np.int64))[None, None], n)
    t = one_hot(torch.from_numpy(truth.astype(np.int64))[None, None], n)
    dice = compute_dice(p, t, include_background=False, ignore_empty=False)[0]
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own deprecated internal argument
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(p, t, include_background=False, percentile=95, spacing=list(spacing))[
            0
        ]
    spacing3 = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    pred_ml, true_ml = volumes_ml(pred, spacing3, list(names)), volumes_ml(truth, spacing3, list(names))
    return [
        CaseScore(case, name, round(float(dice[i]), 5), round(float(hd[i]), 3), pred_ml[name], true_ml[name])
        for i, name in enumerate(names)
    ]


def label_array(
    path: Path, binarize: bool, reference: MedImage | None = None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Integer labels (or a 0/1 mask with ``binarize``) and spacing from NIfTI, DICOM or DICOM SEG."""
    image = load_label(path, reference)
    return label_values(grayscale(image, f"The label '{path.name}'"), binarize), image.spacing


def evaluate_files(
    preds: Sequence[str | Path],
    labels: Sequence[str | Path],
    names: Sequence[str],
    binarize: bool = False,
    images: Sequence[str | Path] = (),
) -> list[CaseScore]:
    """Score saved predictions against labels, paired in sorted file-name order.

    ``images`` (optional, same order) are the DICOM series that DICOM SEG predictions or labels refer to.
    """
    pred_paths, label_paths = expand(preds, "predictions"), expand(labels, "labels")
    image_paths = expand(images, "images") if images else []
    if len(pred_paths) != len(label_paths) or (image_paths and len(image_paths) != len(label_paths)):
        raise ConfigError(
            f"{len(pred_paths)} prediction(s), {len(label_paths)} label(s)"
            + (f" and {len(image_paths)} image(s)." if image_paths else "."),
            "Give one label (and image) per prediction; they are paired in sorted file-name order.",
        )
    scores: list[CaseScore] = []
    for i, (pp, lp) in enumerate(zip(pred_paths, label_paths, strict=True)):
        reference = load_volume(image_paths[i]) if image_paths else None
        truth, spacing = label_array(lp, binarize, reference)
        pred, _ = label_array(pp, False, reference)
        scores += score_case(case_name(lp), pred, truth, spacing, names)
    return scores


def evaluate_model(
    predict: Callable[[MedImage], np.ndarray],
    images: Sequence[str | Path],
    labels: Sequence[str | Path],
    names: Sequence[str],
    binarize: bool = False,
) -> list[CaseScore]:
    """Predict each image with ``predict`` and score it against its label (NIfTI, DICOM or DICOM SEG)."""
    scores: list[CaseScore] = []
    for img, lab in pair(images, labels):
        image = load_volume(img)
        truth, spacing = label_array(lab, binarize, image)
        scores += score_case(case_name(img), predict(image), truth, spacing, names)
    return scores


def summarize(scores: Sequence[CaseScore]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of Dice and HD95 per structure."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(s.label for s in scores):
        rows = [s for s in scores if s.label == name]
        dice = np.array([s.dice for s in rows])
        hd = np.array([s.hd95_mm for s in rows if math.isfinite(s.hd95_mm)])
        out[name] = {
            "cases": len(rows),
            "dice_mean": round(float(dice.mean()), 5),
            "dice_std": round(float(dice.std()), 5),
            "hd95_mean_mm": round(float(hd.mean()), 3) if hd.size else float("nan"),
        }
    return out


def write_scores(scores: Sequence[CaseScore], folder: Path) -> dict[str, Any]:
    """``scores.csv`` (a row per case and structure) and ``summary.json``; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = ["case", "label", "dice", "hd95_mm", "pred_ml", "true_ml"]
    with (folder / "scores.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        writer.writerows([[getattr(s, f) for f in fields] for s in scores])
    summary = summarize(scores)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
