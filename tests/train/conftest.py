"""Small real training sets (pydicom's CT and a real chest X-ray) and a trained adapter, built once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medvlab.train.config import SFTTrainConfig
from medvlab.train.sft import run_sft


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory: pytest.TempPathFactory, dicom_files: dict[str, Path]) -> Path:
    folder = tmp_path_factory.mktemp("train-data")
    shutil.copy(dicom_files["CT_small.dcm"], folder / "ct.dcm")
    shutil.copy(dicom_files["RG1_UNCI.dcm"], folder / "cxr.dcm")
    records = [
        {
            "messages": [
                {"role": "user", "content": "<image>Is there a pneumothorax?"},
                {"role": "assistant", "content": "No pneumothorax."},
            ],
            "images": ["cxr.dcm"],
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "哪个器官？"}]},
                {"role": "assistant", "content": "腹部CT轴位图像。"},
            ],
            "images": ["ct.dcm"],
        },
    ]
    write_jsonl(folder / "train.jsonl", records * 4)
    prefs = [
        {
            "prompt": "<image>Is there a pneumothorax?",
            "chosen": "No pneumothorax.",
            "rejected": "A large tension pneumothorax.",
            "images": ["cxr.dcm"],
        }
    ]
    write_jsonl(folder / "prefs.jsonl", prefs * 4)
    return folder


def sft_config(train_dir: Path, out: Path, **kw: object) -> SFTTrainConfig:
    base = dict(
        model="tiny",
        data=train_dir / "train.jsonl",
        output_dir=out,
        max_steps=6,
        batch_size=2,
        grad_accum=1,
        learning_rate=5e-3,
        logging_steps=1,
        save_steps=3,
        warmup_ratio=0.0,
        lora_rank=8,
    )
    base.update(kw)
    return SFTTrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sft_adapter(
    train_dir: Path, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, tiny_dir: Path
) -> Path:
    return run_sft(sft_config(train_dir, tmp_path_factory.mktemp("sft-run")), cache_dir)
