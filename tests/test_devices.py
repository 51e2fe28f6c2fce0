"""The device layer's probe table, with fake probes standing in for accelerators."""

from __future__ import annotations

import pytest

from medvlab.devices import Probe, doctor, pick_attention, resolve_device
from medvlab.errors import ConfigError, DeviceError


def fake(
    kind: str, available: bool = True, count: int = 1, bf16: bool = True, half: str = "bfloat16"
) -> Probe:
    return Probe(
        kind=kind,
        available=lambda: available,
        count=lambda: count,
        name=lambda i: f"Fake {kind.upper()} #{i}",
        memory_gb=lambda i: 80.0,
        supports_bf16=lambda: bf16,
        half_dtype=half,
        install_hint=f"install {kind} stack",
    )


def table(**avail: bool) -> list[Probe]:
    kinds = ["cuda", "npu", "mlu", "xpu", "mps"]
    return [fake(k, avail.get(k, False), half="float16" if k == "mlu" else "bfloat16") for k in kinds] + [
        fake("cpu")
    ]


def no_flash(name: str) -> bool:
    return False


def test_first_available_probe_wins() -> None:
    info = resolve_device(probes=table(npu=True, mps=True), module_exists=no_flash)
    assert info.kind == "npu" and info.torch_device == "npu:0"
    assert info.dtype == "bfloat16" and info.attn_implementation == "sdpa"
    assert info.found == ("npu", "mps", "cpu")


def test_cpu_fallback_uses_float32() -> None:
    info = resolve_device(probes=table(), module_exists=no_flash)
    assert (info.kind, info.torch_device, info.dtype) == ("cpu", "cpu", "float32")


def test_override_and_index() -> None:
    probes = [fake("cuda", count=2), fake("cpu")]
    info = resolve_device("cuda:1", probes=probes, module_exists=no_flash)
    assert info.torch_device == "cuda:1" and info.name == "Fake CUDA #1"
    assert resolve_device("cpu", probes=probes).kind == "cpu"


def test_unavailable_device_says_how_to_fix() -> None:
    with pytest.raises(DeviceError, match="install npu stack"):
        resolve_device("npu", probes=table(), module_exists=no_flash)
    with pytest.raises(DeviceError, match="2 cuda device"):
        resolve_device("cuda:5", probes=[fake("cuda", count=2), fake("cpu")])


def test_unknown_device_name_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'cuda'"):
        resolve_device("cdua", probes=table())


def test_dtype_per_device() -> None:
    assert resolve_device(probes=[fake("cuda", bf16=False), fake("cpu")]).dtype == "float16"
    assert resolve_device(probes=[fake("mlu", half="float16"), fake("cpu")]).dtype == "float16"
    assert resolve_device(dtype="float32", probes=[fake("cuda"), fake("cpu")]).dtype == "float32"


def test_flash_attention_only_on_cuda_with_package() -> None:
    assert pick_attention("cuda", "bfloat16", lambda m: m == "flash_attn") == "flash_attention_2"
    assert pick_attention("cuda", "float32", lambda m: True) == "sdpa"
    assert pick_attention("npu", "bfloat16", lambda m: True) == "sdpa"
    info = resolve_device(probes=[fake("cuda"), fake("cpu")], module_exists=lambda m: m == "flash_attn")
    assert info.attn_implementation == "flash_attention_2"
    with pytest.raises(ConfigError, match="flash-attn"):
        resolve_device("cpu", attn_implementation="flash_attention_2", probes=table(), module_exists=no_flash)


def test_a_throwing_vendor_probe_counts_as_absent() -> None:
    def boom() -> bool:
        raise RuntimeError("driver exploded")

    broken = Probe("npu", boom, lambda: 0, lambda i: "x", lambda i: None, lambda: True)
    assert resolve_device(probes=[broken, fake("cpu")]).kind == "cpu"


def test_doctor_on_this_machine() -> None:
    report = doctor()
    assert report["selected"]["device"] == "cpu"
    assert report["torch"].startswith("2.")
    assert set(report["accelerators"]) == {"cuda", "npu", "mlu", "xpu", "mps"}
