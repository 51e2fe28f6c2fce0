"""Quantized export: the recipe keeps the vision tower precise; every guard says what to do in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medvlab.errors import ConfigError, DeviceError, ModelNotFoundError
from medvlab.train import export as export_mod
from medvlab.train.export import FORMATS, ExportOptions, check_environment, kept_precise, recipe_spec


def test_recipe_keeps_vision_tower_projector_and_head_precise(tiny_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText

    names = [n for n, _ in AutoModelForImageTextToText.from_pretrained(tiny_dir).named_modules() if n]
    vision = [n for n in names if "vision_tower" in n or "multi_modal_projector" in n or n == "lm_head"]
    language = [n for n in names if "language_model" in n and n.endswith(("q_proj", "down_proj"))]
    assert vision and language
    assert all(kept_precise(n) for n in vision)
    assert not any(kept_precise(n) for n in language)  # the language model's linears are quantized
    specs = {fmt: recipe_spec(fmt) for fmt in FORMATS}
    assert {s["scheme"] for s in specs.values()} == {"W4A16", "W4A16_ASYM", "FP8_DYNAMIC"}
    assert [s["modifier"] for s in specs.values()] == ["GPTQModifier", "AWQModifier", "QuantizationModifier"]
    assert all(r"re:.*vision_tower.*" in s["ignore"] and s["targets"] == ["Linear"] for s in specs.values())


def test_guards(tiny_dir: Path, sft_adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="Unknown export format 'int3'"):
        ExportOptions(tiny_dir, tmp_path / "q", "int3")
    with pytest.raises(ModelNotFoundError, match="It is an adapter: run 'medvlab train merge' first"):
        check_environment(ExportOptions(sft_adapter, tmp_path / "q", "fp8"))
    with pytest.raises(ConfigError, match="needs calibration records.*--calibration"):
        check_environment(ExportOptions(tiny_dir, tmp_path / "q", "gptq"))
    monkeypatch.setattr(export_mod, "has_module", lambda name: False)
    with pytest.raises(ConfigError, match="pip install llmcompressor"):
        check_environment(ExportOptions(tiny_dir, tmp_path / "q", "fp8"))
    import torch

    monkeypatch.setattr(export_mod, "has_module", lambda name: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="runs on a CUDA GPU"):
        check_environment(ExportOptions(tiny_dir, tmp_path / "q", "fp8"))


def test_export_cli_says_what_is_missing(tiny_dir: Path, tmp_path: Path) -> None:
    from medvlab.cli.main import app
    from medvlab.devices import has_module

    if has_module("llmcompressor"):
        pytest.skip("llm-compressor is installed here")
    result = CliRunner().invoke(
        app, ["train", "export", str(tiny_dir), "-o", str(tmp_path / "q"), "--format", "fp8"]
    )
    assert result.exit_code != 0
    assert "pip install llmcompressor" in str(result.exception) + result.output
    assert not (tmp_path / "q").exists()
