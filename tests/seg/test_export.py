"""Exports reproduce the eager network within tolerance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from medvlab.errors import ConfigError
from medvlab.seg.export import export_model
from medvlab.seg.model import load_checkpoint


def test_torchscript_and_onnx_match_eager(sphere_model: Path, tmp_path: Path) -> None:
    results = {r.format: r for r in export_model(sphere_model, tmp_path, ["torchscript", "onnx", "tensorrt"])}
    assert results["torchscript"].ok and results["torchscript"].max_abs_diff is not None
    assert results["onnx"].ok and results["onnx"].max_abs_diff < 1e-3  # type: ignore[operator]
    assert results["tensorrt"].ok is None and "CUDA" in results["tensorrt"].note  # no GPU here
    report = json.loads((tmp_path / "export.json").read_text())
    assert [r["format"] for r in report["results"]] == ["torchscript", "onnx", "tensorrt"]
    # the files work on their own, with another batch size (windows are batched at inference)
    ckpt = load_checkpoint(sphere_model)
    x = torch.rand(3, 1, 32, 32, 32)
    with torch.no_grad():
        want = ckpt.network()(x).numpy()
    got = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-3)
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    np.testing.assert_allclose(scripted(x).detach().numpy(), want, atol=1e-4)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="export format"):
        export_model("brain-mask", tmp_path, ["tflite"])
