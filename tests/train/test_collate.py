"""Loss masking: only the answer is learned; image tokens, prompt and padding are masked."""

from __future__ import annotations

from pathlib import Path

from medvlab.config import PromptOptions
from medvlab.train.collate import IGNORE, VisionSFTCollator
from medvlab.train.data import ImageCache, load_sft


def test_labels_cover_the_answer_only(train_dir: Path, lab) -> None:  # type: ignore[no-untyped-def]
    processor = lab.backend.processor
    records = load_sft(train_dir / "train.jsonl", ImageCache(PromptOptions()))[:2]
    batch = VisionSFTCollator(processor)(records)
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image_soft_token>")
    assert batch["labels"].shape == batch["input_ids"].shape
    assert bool(
        ((batch["input_ids"] == image_id) <= (batch["labels"] == IGNORE)).all()
    )  # image tokens masked
    assert bool(((batch["attention_mask"] == 0) <= (batch["labels"] == IGNORE)).all())  # padding masked
    learned = [tok.decode(row[row != IGNORE]) for row in batch["labels"]]
    assert learned == ["No pneumothorax.<end_of_turn>", "腹部CT轴位图像。<end_of_turn>"]
    full = VisionSFTCollator(processor, completion_only=False)(records)
    assert int((full["labels"] != IGNORE).sum()) > int((batch["labels"] != IGNORE).sum())
    assert bool(((full["input_ids"] == image_id) <= (full["labels"] == IGNORE)).all())  # still masked


def test_truncation_never_cuts_image_tokens(train_dir: Path, lab) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from medvlab.errors import DataError

    records = load_sft(train_dir / "train.jsonl", ImageCache(PromptOptions()))[:1]
    full = VisionSFTCollator(lab.backend.processor)(records)
    n = int(full["input_ids"].shape[1])
    short = VisionSFTCollator(lab.backend.processor, max_length=n - 3)(records)  # only answer text cut
    assert short["input_ids"].shape[1] == n - 3
    with pytest.raises(DataError, match="would cut its image tokens.*Raise --max-length"):
        VisionSFTCollator(lab.backend.processor, max_length=20)(records)
