"""VQA metrics on a hand-made set with known answers, and the eval command on the tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medvlab.cli.main import app
from medvlab.train.evaluate import VQAItem, evaluate, read_items, token_f1_recall, yes_no


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("no pneumothorax", "no"),
        ("是的", "yes"),
        ("没有", "no"),
        ("有，位于左肺", "yes"),
        ("否", "no"),
        ("The heart is enlarged", None),
    ],
)
def test_yes_no(text: str, expected: str | None) -> None:
    assert yes_no(text) == expected


def test_token_f1_and_recall() -> None:
    assert token_f1_recall("left lower lobe", "left lower lobe") == (1.0, 1.0)
    f1, recall = token_f1_recall("the left lung", "left lower lobe")
    assert recall == pytest.approx(1 / 3) and f1 == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))
    assert token_f1_recall("右肺", "右肺上叶") == (pytest.approx(2 / 3), 0.5)
    assert token_f1_recall("kidney", "liver") == (0.0, 0.0)


def test_evaluate_on_known_answers(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    items = [
        VQAItem("1", img, "Is there a fracture?", "yes", True),
        VQAItem("2", img, "Is the heart enlarged?", "no", True),
        VQAItem("3", img, "Where is the nodule?", "left upper lobe", False),
    ]
    answers = {"1": "Yes, a rib fracture.", "2": "Yes.", "3": "upper lobe of the left lung"}
    summary = evaluate(items, {"model": lambda item: answers[item.qid]}, tmp_path / "out")
    s = summary["model"]
    assert s["closed_accuracy"] == 0.5 and s["n_closed"] == 2 and s["n_open"] == 1
    assert s["open_recall"] == 1.0 and s["open_f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [r["model_correct"] for r in rows] == ["1.0", "0.0", ""]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


def test_read_vqa_rad_and_slake_fields(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    data = tmp_path / "vqa.json"
    data.write_text(
        json.dumps(
            [
                {
                    "image_name": "a.png",
                    "question": "Is it normal?",
                    "answer": "Yes",
                    "answer_type": "CLOSED",
                },
                {
                    "img_name": "a.png",
                    "question": "哪个器官？",
                    "answer": "肝脏",
                    "answer_type": "OPEN",
                    "qid": 7,
                },
                {"image": "a.png", "question": "Any mass?", "answer": "no"},
            ],
            ensure_ascii=False,
        )
    )
    items = read_items(data)
    assert [i.closed for i in items] == [True, False, True] and items[1].qid == "7"


def test_eval_command_compares_base_and_adapter(train_dir: Path, sft_adapter: Path, tmp_path: Path) -> None:
    data = tmp_path / "vqa.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {
                    "image": str(train_dir / "cxr.dcm"),
                    "question": "Is there a pneumothorax?",
                    "answer": "no",
                    "answer_type": "CLOSED",
                },
                {
                    "image": str(train_dir / "ct.dcm"),
                    "question": "哪个器官？",
                    "answer": "腹部CT轴位图像",
                    "answer_type": "OPEN",
                },
            ]
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--data",
            str(data),
            "--model",
            "tiny",
            "--adapter",
            str(sft_adapter),
            "-o",
            str(tmp_path / "out"),
            "--max-new-tokens",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary) == {"base", "adapter"} and summary["adapter"]["n_open"] == 1
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert {"base_prediction", "adapter_prediction"} <= set(rows[0])
    # the adapter was trained on these exact answers; its predictions differ from the base model's
    assert [r["base_prediction"] for r in rows] != [r["adapter_prediction"] for r in rows]
