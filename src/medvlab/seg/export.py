"""Export a segmentation checkpoint to TorchScript and ONNX (and TensorRT / torch.compile when present).

Every export is run on the same input as the eager network and must match it within a tolerance; the
result of each check is written to ``export.json`` next to the files, with the spec in ``spec.json``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from medvlab.devices import has_module
from medvlab.errors import ConfigError, look_up_option
from medvlab.seg.model import load_checkpoint

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx", "compile", "tensorrt")


@dataclass
class ExportResult:
    format: str
    path: str | None
    max_abs_diff: float | None
    ok: bool | None
    """True/False: within tolerance or not; None: skipped on this machine."""
    seconds: float
    note: str = ""


def _compare(
    name: str, path: Path | None, run: Callable[[], np.ndarray], want: np.ndarray, tol: float, t0: float
) -> ExportResult:
    got = run()
    diff = float(np.abs(got.astype(np.float32) - want).max())
    ok = got.shape == want.shape and diff <= tol
    if not ok:
        logger.warning("%s output differs from eager by %.3g (tolerance %.3g)", name, diff, tol)
    return ExportResult(name, str(path) if path else None, diff, ok, round(time.perf_counter() - t0, 3))


def export_model(
    ref: str | Path,
    out_dir: Path,
    formats: Sequence[str] = ("torchscript", "onnx"),
    tolerance: float = 1e-3,
    batch: int = 2,
) -> list[ExportResult]:
    """Export ``ref`` (checkpoint path or built-in name) to ``formats`` and check each against eager."""
    chosen = [look_up_option(f, FORMATS, "export format") for f in formats]
    if not chosen:
        raise ConfigError("No export format was chosen.", f"Pass --format with one of: {', '.join(FORMATS)}.")
    ckpt = load_checkpoint(ref)
    net = ckpt.network("cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 1, *ckpt.spec.patch), generator=gen)
    with torch.inference_mode():
        want = net(x).numpy()
    results: list[ExportResult] = []
    for fmt in chosen:
        t0 = time.perf_counter()
        try:
            results.append(_EXPORTERS[fmt](net, x, want, out_dir, tolerance, t0))
        except _Skip as skip:
            logger.info("%s export skipped: %s", fmt, skip)
            results.append(ExportResult(fmt, None, None, None, 0.0, f"skipped: {skip}"))
    (out_dir / "spec.json").write_text(json.dumps(ckpt.spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    (out_dir / "export.json").write_text(
        json.dumps({"tolerance": tolerance, "results": [asdict(r) for r in results]}, indent=2) + "\n",
        encoding="utf-8",
    )
    return results


class _Skip(Exception):
    """This export cannot run on this machine (no GPU, package missing)."""


def _torchscript(
    net: torch.nn.Module, x: torch.Tensor, want: np.ndarray, out: Path, tol: float, t0: float
) -> ExportResult:
    path = out / "model.ts"
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks frozen at the patch size
        traced = torch.jit.trace(net, x, check_trace=False)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))

    def run() -> np.ndarray:
        with torch.inference_mode():
            return loaded(x).numpy()

    return _compare("torchscript", path, run, want, tol, t0)


def _onnx(
    net: torch.nn.Module, x: torch.Tensor, want: np.ndarray, out: Path, tol: float, t0: float
) -> ExportResult:
    if not has_module("onnxruntime"):
        raise _Skip("onnxruntime is not installed")
    import onnxruntime as ort

    path = out / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    with warnings.catch_warnings():  # the exporter's own deprecation chatter (pytree internals)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            dynamo=True,
            verbose=False,
            external_data=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run() -> np.ndarray:
        return np.asarray(session.run(["logits"], {"image": x.numpy()})[0])

    return _compare("onnx", path, run, want, tol, t0)


def _compile(
    net: torch.nn.Module, x: torch.Tensor, want: np.ndarray, out: Path, tol: float, t0: float
) -> ExportResult:
    from medvlab.devices import compile_module, resolve_device

    compiled = compile_module(net, resolve_device(str(x.device), dtype="float32"))

    def run() -> np.ndarray:
        with torch.inference_mode():
            return compiled(x).numpy()

    result = _compare("compile", None, run, want, tol, t0)
    result.note = "in-process only (torch.compile has no file format)"
    return result


def _tensorrt(
    net: torch.nn.Module, x: torch.Tensor, want: np.ndarray, out: Path, tol: float, t0: float
) -> ExportResult:
    if not torch.cuda.is_available():
        raise _Skip("TensorRT needs a CUDA GPU")
    if not has_module("torch_tensorrt"):
        raise _Skip("torch-tensorrt is not installed (pip install torch-tensorrt)")
    import torch_tensorrt

    cuda_net, cuda_x = net.cuda(), x.cuda()
    trt = torch_tensorrt.compile(cuda_net, inputs=[cuda_x], enabled_precisions={torch.float32})
    path = out / "model_trt.ts"
    torch_tensorrt.save(trt, str(path), output_format="torchscript", inputs=[cuda_x])

    def run() -> np.ndarray:
        with torch.inference_mode():
            return trt(cuda_x).float().cpu().numpy()

    result = _compare("tensorrt", path, run, want, max(tol, 1e-2), t0)
    net.cpu()
    return result


_EXPORTERS = {"torchscript": _torchscript, "onnx": _onnx, "compile": _compile, "tensorrt": _tensorrt}
