"""Constrained JSON answers on the tiny model: they always parse, whatever the random weights say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvlab.config import GenerationOptions
from medvlab.errors import StructuredOutputError
from medvlab.services import Lab
from medvlab.vlm.engine import StreamStats
from medvlab.vlm.prompting import DISCLAIMERS, Turn
from medvlab.vlm.structured import FIELDS, parse, schema_for, token_budget


def test_schema_fields_and_budget() -> None:
    schema = schema_for(100)
    assert tuple(schema["properties"]) == FIELDS
    assert schema["properties"]["findings"]["maxLength"] == 100
    assert schema["properties"]["confidence"]["enum"] == ["low", "moderate", "high"]
    assert token_budget(schema) > 4 * (100 + 50 + 25 + 100 + 50)


@pytest.mark.parametrize("question", ["Describe the findings.", "请描述所见。"])
def test_structured_answer_always_parses(lab: Lab, dicom_files: dict[str, Path], question: str) -> None:
    image = lab.load_image(dicom_files["RG1_UNCI.dcm"])
    stats = StreamStats()
    data = lab.structured([Turn("user", question, [image])], stats=stats, max_chars=40)
    assert set(data) == {*FIELDS, "disclaimer"}
    assert data["confidence"] in ("low", "moderate", "high")
    assert all(len(data[k]) <= 40 for k in ("findings", "impression"))
    assert data["disclaimer"] == DISCLAIMERS["zh" if "请" in question else "en"]
    assert stats.finish_reason == "stop"  # the grammar closed the object; not cut by the token limit


def test_custom_schema_through_the_engine(lab: Lab) -> None:
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
    text = "".join(
        lab.backend.stream(
            [{"role": "user", "content": [{"type": "text", "text": "Is there a fracture?"}]}],
            GenerationOptions(max_new_tokens=4, json_schema=schema),
        )
    )
    assert json.loads(text)["answer"] in ("yes", "no")


def test_incomplete_json_is_a_clear_error() -> None:
    with pytest.raises(StructuredOutputError, match="max_new_tokens"):
        parse('{"findings": "cut', schema_for())
