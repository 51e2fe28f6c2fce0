"""Images + question -> chat messages, languages and the disclaimer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medvlab.config import PromptOptions
from medvlab.imaging import load, medgemma_ct_rgb
from medvlab.imaging.types import MedImage
from medvlab.vlm.prompting import (
    DISCLAIMERS,
    SYSTEM_PROMPTS,
    Turn,
    build_messages,
    detect_language,
    with_disclaimer,
)


def volume(n: int) -> MedImage:
    px = np.stack([np.full((8, 8), k * 10, np.int16) for k in range(n)])
    return MedImage(pixels=px, modality="CT")


def test_detect_language() -> None:
    assert detect_language("Is there a nodule?") == "en"
    assert detect_language("肺部有结节吗？") == "zh"
    assert detect_language("CT上有什么 finding?") == "zh"


def test_volume_slices_in_order_with_labels_then_question() -> None:
    msgs = build_messages([Turn("user", "Any bleed?", [volume(40)])], PromptOptions(max_slices=5))
    assert msgs[0]["role"] == "system" and msgs[0]["content"][0]["text"] == SYSTEM_PROMPTS["en"]
    parts = msgs[1]["content"]
    kinds = [p["type"] for p in parts]
    assert kinds == ["image", "text"] * 5 + ["text"]
    labels = [p["text"] for p in parts[1:-1:2]]
    assert labels == ["SLICE 1", "SLICE 11", "SLICE 21", "SLICE 30", "SLICE 40"]
    assert parts[-1]["text"] == "Any bleed?"


def test_ct_slice_uses_medgemma_encoding_by_default(dicom_files: dict[str, Path]) -> None:
    ct = load(dicom_files["693_UNCI.dcm"])
    msgs = build_messages([Turn("user", "What is this?", [ct])])
    sent = np.asarray(msgs[1]["content"][0]["image"])
    np.testing.assert_array_equal(sent, medgemma_ct_rgb(ct.pixels[0]))
    assert msgs[1]["content"][1]["text"] == "What is this?"  # a single image gets no SLICE label
    lung = build_messages([Turn("user", "q", [ct])], PromptOptions(window="lung"))
    assert not np.array_equal(np.asarray(lung[1]["content"][0]["image"]), sent)


def test_chinese_question_gets_chinese_system_prompt() -> None:
    msgs = build_messages([Turn("user", "这是什么？", [volume(1)])])
    assert msgs[0]["content"][0]["text"] == SYSTEM_PROMPTS["zh"]
    forced = build_messages([Turn("user", "这是什么？")], PromptOptions(language="en"))
    assert forced[0]["content"][0]["text"] == SYSTEM_PROMPTS["en"]


def test_multi_turn_keeps_roles() -> None:
    turns = [Turn("user", "q1", [volume(1)]), Turn("assistant", "a1"), Turn("user", "q2")]
    msgs = build_messages(turns)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    with pytest.raises(ValueError, match="end with a user turn"):
        build_messages(turns[:2])


def test_disclaimer_ends_the_answer() -> None:
    out = list(with_disclaimer(iter(["a", "b"]), "zh"))
    assert out[:2] == ["a", "b"] and out[-1].endswith(DISCLAIMERS["zh"])
