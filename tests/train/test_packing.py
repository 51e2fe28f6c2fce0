"""Multimodal packing: a packed batch gives each record exactly the loss it has alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from medvlab.config import PromptOptions
from medvlab.train.collate import IGNORE, VisionSFTCollator
from medvlab.train.data import ImageCache, load_sft
from medvlab.train.metrics import read_metrics
from medvlab.train.packing import PackedCollator, encode_records, install_packed_attention, pack
from medvlab.train.sft import run_sft
from tests.helpers import sft_config


@pytest.fixture(scope="module")
def mixed(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Records whose images sit at different offsets (text before them), one with two images."""
    folder = tmp_path_factory.mktemp("pack-data")
    for name in ("ct.dcm", "cxr.dcm"):
        shutil.copy(train_dir / name, folder / name)
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Prior study first. " * k + "<image>Is there a pneumothorax?"},
                {"role": "assistant", "content": "No pneumothorax. " * k},
            ],
            "images": ["ct.dcm" if k % 2 else "cxr.dcm"],
        }
        for k in (1, 3, 2)
    ]
    rows.append(
        {
            "messages": [
                {"role": "user", "content": "Compare <image> with <image>."},
                {"role": "assistant", "content": "不同的检查。"},
            ],
            "images": ["ct.dcm", "cxr.dcm"],
        }
    )
    (folder / "mixed.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return load_sft(folder / "mixed.jsonl", ImageCache(PromptOptions()))


def token_losses(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of every learned token of row 0, in order."""
    with torch.no_grad():
        logits = model(**batch).logits[0, :-1]
    labels = batch["labels"][0, 1:]
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE)
    return loss[labels != IGNORE]


def test_packed_batch_gives_each_record_its_own_loss(mixed: list[dict[str, Any]], tiny_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_dir)
    model = AutoModelForImageTextToText.from_pretrained(
        tiny_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    collator = VisionSFTCollator(processor, completion_only=False)  # many learned tokens: a strict check
    alone = [token_losses(model, collator([r])) for r in mixed]

    encoded = encode_records(mixed, collator)
    packed = PackedCollator(encoded, processor, processor.tokenizer.pad_token_id)
    batch = packed([{"pack": [0, 1, 2, 3]}])
    assert install_packed_attention(model)
    together = token_losses(model, batch)

    sizes = [len(a) for a in alone]
    assert len(together) == sum(sizes)
    for rec, (one, both) in enumerate(zip(alone, together.split(sizes), strict=True)):
        assert torch.allclose(one, both, atol=1e-5), f"record {rec}: {float((one - both).abs().max())}"
        assert float(one.mean()) == pytest.approx(float(both.mean()), abs=1e-5)


def test_packed_batch_layout(mixed: list[dict[str, Any]], lab) -> None:  # type: ignore[no-untyped-def]
    processor = lab.backend.processor
    collator = VisionSFTCollator(processor)
    encoded = encode_records(mixed, collator)
    lengths = [len(e) for e in encoded]
    batch = PackedCollator(encoded, processor, processor.tokenizer.pad_token_id)(
        [{"pack": [0, 3]}, {"pack": [1]}]
    )
    assert "attention_mask" not in batch  # the mask comes from the restarting position ids
    width = lengths[0] + lengths[3]
    assert batch["input_ids"].shape == (2, width)
    pos = batch["position_ids"]
    assert pos[0, 0] == 0 and pos[0, lengths[0]] == 0 and pos[0, -1] == lengths[3] - 1  # restart per record
    assert pos[1, lengths[1]] == 0 and bool((batch["labels"][1, lengths[1] :] == IGNORE).all())  # padding
    assert batch["labels"][0, lengths[0]] == IGNORE  # record boundary
    # labels within each record are the unpacked collator's (answer only), images in record order
    for row, idx, start in ((0, 0, 0), (0, 3, lengths[0]), (1, 1, 0)):
        alone = collator([mixed[idx]])
        assert torch.equal(batch["input_ids"][row, start : start + lengths[idx]], alone["input_ids"][0])
        assert torch.equal(batch["labels"][row, start + 1 : start + lengths[idx]], alone["labels"][0, 1:])
    expected = torch.cat([collator([mixed[i]])["pixel_values"] for i in (0, 3, 1)])
    assert torch.equal(batch["pixel_values"], expected)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    assert int((batch["input_ids"] == image_id).sum()) == 4 * 16  # four whole images of 16 tokens


def test_pack_keeps_records_whole() -> None:
    lengths = [300, 120, 700, 90, 2500, 400, 60]
    packs = pack(lengths, 1024)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))  # every record exactly once
    assert [4] in packs  # too long: a pack of its own, never cut
    assert all(sum(lengths[i] for i in p) <= 1024 for p in packs if p != [4])
    assert len(packs) == 3  # first-fit decreasing: 700+300, 400+120+90+60, 2500


def test_sft_with_packing_trains(train_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "packed"
    adapter = run_sft(sft_config(train_dir, out, max_steps=2, packing=True, max_length=256), cache_dir)
    lora_b = [v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)
    losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
