"""``doctor()``: what medvlab finds on this machine and the choices the device layer would make there."""

from __future__ import annotations

import importlib
import platform
from typing import Any

from medvlab.devices import _safe, default_probes, has_module, resolve_device
from medvlab.errors import DeviceError


def doctor(device: str | None = None) -> dict[str, Any]:
    """What medvlab finds on this machine: versions, accelerators, and the choice it would make."""
    import os
    import sys

    report: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("torch", "transformers", "pydicom", "nibabel", "gradio", "fastapi"):
        try:
            report[mod] = importlib.import_module(mod).__version__
        except Exception:
            report[mod] = "not installed"
    probes = default_probes()
    report["accelerators"] = {
        p.kind: (_safe(p.count) or 0) if _safe(p.available) else 0 for p in probes if p.kind != "cpu"
    }
    optional = ("flash_attn", "bitsandbytes", "torch_npu", "torch_mlu", "torchair", "vllm", "sglang")
    report["optional"] = {m: has_module(m) for m in optional}
    report["hf_hub_offline"] = os.environ.get("HF_HUB_OFFLINE", "0")
    try:
        info = resolve_device(device, probes=probes)
        report["selected"] = {
            "device": info.torch_device,
            "name": info.name,
            "dtype": info.dtype,
            "attention": info.attn_implementation,
            "memory_gb": round(info.memory_gb, 1) if info.memory_gb else None,
            "memory_fraction": info.memory_fraction,
            "compile": info.compile_backend or "off",
            "graph_mode": info.graph_mode,
            "distributed": info.distributed_backend,
            "autocast": info.autocast_dtype(True),
        }
    except DeviceError as exc:
        report["selected"] = {"error": str(exc)}
    return report
