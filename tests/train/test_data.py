"""Training records: validation that names the line, images expanded as at inference."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvlab.config import PromptOptions
from medvlab.errors import DataError
from medvlab.train.data import ImageCache, load_dpo, load_sft
from tests.helpers import write_jsonl, write_series


def cache() -> ImageCache:
    return ImageCache(PromptOptions(max_slices=3))


def test_sft_records_expand_images_like_inference(
    train_dir: Path, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    records = load_sft(train_dir / "train.jsonl", c := cache())
    assert len(records) == 8 and c.hits == 6  # two files, decoded once each
    first = records[0]
    assert first["messages"][0]["role"] == "system"  # the inference system prompt is added
    user = first["messages"][1]["content"]
    assert [p["type"] for p in user] == ["image", "text"] and user[1]["text"] == "Is there a pneumothorax?"
    assert first["images"][0].mode == "RGB" and len(first["images"]) == 1
    assert (
        "中文" in records[1]["messages"][0]["content"][0]["text"]
    )  # Chinese question, Chinese system prompt
    write_series(dicom_files["CT_small.dcm"], tmp_path / "series", n=10)
    path = write_jsonl(
        tmp_path / "vol.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "<image>Any bleed?"},
                    {"role": "assistant", "content": "No."},
                ],
                "images": [str(tmp_path / "series")],
            }
        ],
    )
    (vol,) = load_sft(path, cache())
    labels = [p["text"] for p in vol["messages"][1]["content"] if p["type"] == "text"]
    assert labels == ["SLICE 1", "SLICE 5", "SLICE 10", "Any bleed?"] and len(vol["images"]) == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"images": []}', "line 2: no 'messages'"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "line 2: roles must alternate"),
        (
            '{"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}]}',
            "line 2: 1 <image> placeholder",
        ),
        (
            '{"messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}], '
            '"images": ["missing.dcm"]}',
            "line 2: image '.*missing.dcm' does not exist",
        ),
        (
            '{"messages": [{"role": "user", "content": "q"}]}',
            "line 2: the conversation must end with a assistant",
        ),
    ],
)
def test_bad_sft_lines_are_named(train_dir: Path, tmp_path: Path, line: str, message: str) -> None:
    good = (train_dir / "train.jsonl").read_text().splitlines()[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(good.replace('"cxr.dcm"', f'"{train_dir / "cxr.dcm"}"') + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_sft(path, cache())


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {
                "messages": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}],
                "images": ["notes.txt"],
            }
        ],
    )
    with pytest.raises(DataError, match="d.jsonl line 1: 'notes.txt' is not a recognised medical image"):
        load_sft(path, cache())


def test_dpo_records(train_dir: Path, tmp_path: Path) -> None:
    (rec, *_) = load_dpo(train_dir / "prefs.jsonl", cache())
    assert (
        rec["prompt"][-1]["role"] == "user" and rec["chosen"][0]["content"][0]["text"] == "No pneumothorax."
    )
    assert len(rec["images"]) == 1
    same = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "a"}])
    with pytest.raises(DataError, match="line 1: 'chosen' and 'rejected' are the same"):
        load_dpo(same, cache())
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"prompt": "q", "chosen": "a"}])
    with pytest.raises(DataError, match="needs 'prompt', 'chosen' and 'rejected'"):
        load_dpo(missing, cache())
