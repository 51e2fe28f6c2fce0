"""VQA evaluation (VQA-RAD / SLAKE records): closed-question accuracy, open-question token F1 and recall.

Records (JSONL or a JSON list): ``image`` (or VQA-RAD's ``image_name`` / SLAKE's ``img_name``), ``question``,
``answer``, ``answer_type`` (``CLOSED`` / ``OPEN``; guessed from a yes/no answer when missing). Image paths
are relative to the data file, or to ``--images``. Base model and adapter are scored in one run: the
adapter is switched off for the base pass, so the model is loaded once.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvlab.errors import DataError

YES = {"yes", "y", "true", "是", "有", "是的", "对"}
NO = {"no", "n", "false", "否", "无", "没有", "不是", "不"}
_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff]")
CLOSED_HINT = {"en": " Answer yes or no.", "zh": " 请回答是或否。"}


@dataclass(frozen=True)
class VQAItem:
    qid: str
    image: Path
    question: str
    answer: str
    closed: bool


def tokens(text: str) -> list[str]:
    """Lower-cased words; each CJK character is a token."""
    return _WORD.findall(text.lower())


def yes_no(text: str) -> str | None:
    """'yes' / 'no' from the first words of an answer (English or Chinese), else None."""
    head = text.strip().lower()
    # Chinese: the first two characters decide ("没有" is no, "有" is yes); English: the first words.
    candidates = [head[:2], head[:1]] if re.match(r"[\u3400-\u9fff]", head) else tokens(head)[:3]
    for word in candidates:
        if word in YES:
            return "yes"
        if word in NO:
            return "no"
    return None


def token_f1_recall(prediction: str, answer: str) -> tuple[float, float]:
    """SQuAD-style token overlap: (F1, recall of the reference tokens)."""
    pred, ref = tokens(prediction), tokens(answer)
    if not pred or not ref:
        return (float(pred == ref), float(pred == ref))
    common: dict[str, int] = {}
    for t in ref:
        common[t] = common.get(t, 0) + 1
    overlap = 0
    for t in pred:
        if common.get(t, 0) > 0:
            overlap += 1
            common[t] -= 1
    if overlap == 0:
        return 0.0, 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall), recall


def read_items(path: Path, images_dir: Path | None = None) -> list[VQAItem]:
    if not path.exists():
        raise DataError(f"The data file '{path}' does not exist.", "Check the --data path.")
    text = path.read_text(encoding="utf-8-sig").strip()
    raw: list[Any] = (
        json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    )
    base = images_dir or path.parent
    items = []
    for i, r in enumerate(raw, start=1):
        where = f"{path.name} record {i}"
        name = r.get("image") or r.get("image_name") or r.get("img_name")
        if not name or "question" not in r or "answer" not in r:
            raise DataError(
                f"{where}: needs image, question and answer.", "Use VQA-RAD or SLAKE field names."
            )
        image = Path(name) if Path(name).is_absolute() else base / name
        if not image.exists():
            raise DataError(
                f"{where}: image '{image}' does not exist.", "Pass --images with the image folder."
            )
        answer = str(r["answer"]).strip()
        kind = str(r.get("answer_type", "")).upper()
        closed = kind == "CLOSED" if kind in ("CLOSED", "OPEN") else yes_no(answer) is not None
        items.append(VQAItem(str(r.get("qid", r.get("id", i))), image, str(r["question"]), answer, closed))
    return items


def score(item: VQAItem, prediction: str) -> dict[str, float]:
    if item.closed:
        return {"correct": float(yes_no(prediction) == yes_no(item.answer))}
    f1, recall = token_f1_recall(prediction, item.answer)
    return {"f1": f1, "recall": recall}


def summarize(rows: Iterable[dict[str, Any]], label: str) -> dict[str, Any]:
    rows = list(rows)
    closed = [r[f"{label}_correct"] for r in rows if r["type"] == "CLOSED"]
    opened = [r for r in rows if r["type"] == "OPEN"]
    return {
        "closed_accuracy": sum(closed) / len(closed) if closed else None,
        "open_f1": sum(r[f"{label}_f1"] for r in opened) / len(opened) if opened else None,
        "open_recall": sum(r[f"{label}_recall"] for r in opened) / len(opened) if opened else None,
        "n_closed": len(closed),
        "n_open": len(opened),
    }


def evaluate(
    items: list[VQAItem],
    predictors: dict[str, Callable[[VQAItem], str]],
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run each predictor on each item; write ``predictions.csv`` and ``summary.json``; return the summary."""
    rows: list[dict[str, Any]] = []
    total = len(items) * len(predictors)
    done = 0
    for item in items:
        row: dict[str, Any] = {
            "qid": item.qid,
            "type": "CLOSED" if item.closed else "OPEN",
            "question": item.question,
            "answer": item.answer,
        }
        for label, predict in predictors.items():
            prediction = predict(item)
            row[f"{label}_prediction"] = prediction
            s = score(item, prediction)
            row[f"{label}_correct"] = s.get("correct", "")
            row[f"{label}_f1"] = s.get("f1", "")
            row[f"{label}_recall"] = s.get("recall", "")
            done += 1
            if progress:
                progress(done, total)
        rows.append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["qid"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {label: summarize(rows, label) for label in predictors}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary
