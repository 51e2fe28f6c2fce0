"""The device layer's probe table, with fake probes standing in for accelerators."""

from __future__ import annotations

import pytest

from medvlab.devices import (
    DeviceInfo,
    Probe,
    autocast,
    grad_scaler,
    pick_attention,
    pick_backend,
    pick_compile,
    resolve_device,
)
from medvlab.doctor import doctor
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


def test_autocast_dtype_per_device() -> None:
    def amp(kind: str, bf16: bool = True) -> str | None:
        return resolve_device(probes=[fake(kind, bf16=bf16), fake("cpu")]).autocast_dtype(True)

    assert amp("cuda") == "bfloat16" and amp("cuda", bf16=False) == "float16"
    assert amp("npu") == amp("mlu") == amp("xpu") == amp("mps") == "float16"
    cpu = resolve_device(probes=table())
    assert cpu.bf16 is True and cpu.dtype == "float32"  # model dtype and autocast dtype are separate choices
    assert cpu.autocast_dtype(True) == "bfloat16" and cpu.autocast_dtype(False) is None
    assert resolve_device(probes=[fake("cuda"), fake("cpu")]).autocast_dtype(amp=False) is None


def test_grad_scaler_only_for_float16() -> None:
    cuda = resolve_device(probes=[fake("cuda", bf16=False), fake("cpu")])
    assert cuda.grad_scaler_kind(cuda.autocast_dtype(True)) == "cuda"
    assert cuda.grad_scaler_kind(None) is None
    assert resolve_device(probes=[fake("cuda"), fake("cpu")]).grad_scaler_kind("bfloat16") is None
    assert resolve_device(probes=[fake("npu"), fake("cpu")]).grad_scaler_kind("float16") == "npu"
    cpu = resolve_device("cpu")
    scaler = grad_scaler(cpu, cpu.autocast_dtype(True))
    assert not scaler.is_enabled() and scaler.state_dict() == {}


def test_distributed_backend_per_device() -> None:
    def backend(kind: str) -> str:
        return resolve_device(probes=[fake(kind), fake("cpu")]).distributed_backend

    assert (backend("cuda"), backend("npu"), backend("mlu")) == ("nccl", "hccl", "cncl")
    assert (backend("mps"), resolve_device(probes=table()).distributed_backend) == ("gloo", "gloo")
    assert pick_backend("xpu", lambda: True, no_flash) == "xccl"
    assert pick_backend("xpu", lambda: False, lambda m: m == "oneccl_bindings_for_pytorch") == "ccl"
    assert pick_backend("xpu", lambda: False, no_flash) == "gloo"


def test_each_torchrun_process_gets_its_own_accelerator() -> None:
    cuda = resolve_device(probes=[fake("cuda", count=4), fake("cpu")])
    assert cuda.for_local_rank(3).torch_device == "cuda:3"
    assert (
        resolve_device("cuda", probes=[fake("cuda"), fake("cpu")]).for_local_rank(1).torch_device == "cuda:1"
    )
    assert resolve_device(probes=table()).for_local_rank(1).torch_device == "cpu"  # ranks share the CPU


def test_autocast_context_on_cpu() -> None:
    import torch

    cpu = resolve_device("cpu")
    with autocast(cpu, amp=True):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast(cpu, amp=False):
        assert not torch.is_autocast_enabled("cpu")


def test_compile_graph_mode_and_memory_per_platform() -> None:
    def on(kind: str, modules: tuple[str, ...] = ()) -> DeviceInfo:
        return resolve_device(probes=[fake(kind), fake("cpu")], module_exists=lambda m: m in modules)

    cuda, npu, npu_graph, mlu = on("cuda"), on("npu"), on("npu", ("torchair",)), on("mlu")
    assert (cuda.compile_backend, cuda.graph_mode, cuda.memory_fraction) == ("inductor", "cudagraphs", 0.9)
    assert (npu.compile_backend, npu.graph_mode, npu.memory_fraction) == (None, "eager", 0.85)
    assert (npu_graph.compile_backend, npu_graph.graph_mode) == ("torchair", "torchair")
    assert (mlu.compile_backend, mlu.distributed_backend, mlu.memory_fraction) == (None, "cncl", 0.85)
    assert pick_compile("mps") == ("aot_eager", "eager") and pick_compile("xpu") == ("inductor", "eager")
    cpu = resolve_device("cpu")
    assert (cpu.compile_backend, cpu.memory_fraction) == ("inductor", None)


def test_compile_module_runs_eagerly_where_no_backend_is_safe() -> None:
    import torch

    from medvlab.devices import compile_module

    net = torch.nn.Linear(2, 2)
    mlu = resolve_device(probes=[fake("mlu"), fake("cpu")])
    assert compile_module(net, mlu) is net  # off: the module as it is, with a warning
    compiled = compile_module(net, resolve_device("cpu"))
    assert compiled is not net and torch.allclose(compiled(torch.ones(1, 2)), net(torch.ones(1, 2)))


def test_doctor_shows_the_platform_choices() -> None:
    selected = doctor("cpu")["selected"]
    assert selected["compile"] == "inductor" and selected["distributed"] == "gloo"
    assert selected["graph_mode"] == "eager" and selected["autocast"] == "bfloat16"
