"""One device layer for CUDA (and ROCm), Ascend NPU, Cambricon MLU, Intel XPU, Apple MPS and CPU.

Modelled on vLLM's ``platforms``: a table of probes, checked in priority order. Vendor extensions
(``torch_npu``, ``torch_mlu``) are imported only inside their probe, and only when installed, so that
importing medvlab never pays for (or breaks on) a vendor stack. Tests pass fake probes. What follows
from the device is decided here too: model dtype, attention, autocast dtype, loss scaling, and the
``torch.distributed`` backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import platform
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from medvlab.errors import ConfigError, DeviceError, look_up_option

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DTYPES = ("bfloat16", "float16", "float32")
ATTENTION = ("flash_attention_2", "sdpa", "eager")
BACKENDS = {"cuda": "nccl", "npu": "hccl", "mlu": "cncl"}
"""torch.distributed backend of each accelerator with its own collective library (ROCm's RCCL is nccl)."""
MEMORY_FRACTION = {"cuda": 0.90, "xpu": 0.90, "npu": 0.85, "mlu": 0.85}
"""Default share of accelerator memory to take; NPU/MLU keep more back for HCCL/CNCL buffers."""


@dataclass(frozen=True)
class Probe:
    """How to find one kind of accelerator. Every callable may import vendor modules lazily."""

    kind: str
    """Torch device type: ``cuda``, ``npu``, ``mlu``, ``xpu``, ``mps`` or ``cpu``."""
    available: Callable[[], bool]
    """True when at least one device of this kind can be used now."""
    count: Callable[[], int]
    """Number of devices of this kind."""
    name: Callable[[int], str]
    """Human-readable name of device ``i``."""
    memory_gb: Callable[[int], float | None]
    """Total memory of device ``i`` in GiB, if known."""
    supports_bf16: Callable[[], bool]
    """Whether bfloat16 math is supported (and fast enough to prefer)."""
    half_dtype: str = "bfloat16"
    """Preferred reduced-precision dtype when bf16 is supported."""
    install_hint: str = ""
    """What to install to get this kind working."""


@dataclass(frozen=True)
class DeviceInfo:
    """The device medvlab will run on, and the choices that follow from it."""

    kind: str
    index: int | None
    name: str
    dtype: str
    attn_implementation: str
    memory_gb: float | None = None
    found: tuple[str, ...] = field(default_factory=tuple)
    bf16: bool = False
    """Whether the device does bfloat16 math natively (what its probe reports)."""
    compile_backend: str | None = None
    """The ``torch.compile`` backend that is safe here, or None: compile off (see :func:`pick_compile`)."""
    graph_mode: str = "eager"
    """How whole graphs are captured: ``cudagraphs`` (CUDA), ``torchair`` (Ascend graph mode), ``eager``."""
    memory_fraction: float | None = None
    """Default share of the device's memory to use (None: not limited, CPU / MPS)."""

    @property
    def torch_device(self) -> str:
        """String for ``torch.device`` / ``.to()``, e.g. ``cuda:0`` or ``cpu``."""
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    def for_local_rank(self, local_rank: int) -> DeviceInfo:
        """The device of one process of a torchrun job: accelerator ``local_rank`` (CPU, MPS: shared)."""
        return self if self.kind in ("cpu", "mps") else replace(self, index=local_rank)

    def autocast_dtype(self, amp: bool = True) -> str | None:
        """The dtype of ``torch.autocast`` here, or None when ``amp`` is off: bfloat16 where it is native
        (CUDA GPUs that support it; CPUs, where autocast does bf16 well), else float16 (older GPUs, MPS,
        NPU, MLU, XPU: the dtype every vendor stack autocasts to)."""
        if not amp:
            return None
        return "bfloat16" if self.kind == "cpu" or (self.kind == "cuda" and self.bf16) else "float16"

    def grad_scaler_kind(self, amp_dtype: str | None) -> str | None:
        """Device type of the ``torch.amp.GradScaler`` that training in ``amp_dtype`` needs, or None:
        only float16 underflows small gradients (bfloat16 and float32 have float32's range)."""
        return self.kind if amp_dtype == "float16" else None

    @property
    def distributed_backend(self) -> str:
        """The ``torch.distributed`` backend for this kind of device (see :func:`pick_backend`)."""
        return pick_backend(self.kind)


def has_module(name: str) -> bool:
    """True if ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _torch() -> Any:
    import torch

    return torch


def _vendor_backend(module: str, attr: str) -> Any | None:
    """Import a vendor extension (which registers ``torch.<attr>``) and return that backend, or None."""
    if not has_module(module):
        return None
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken vendor stack must not break medvlab
        logger.warning("%s is installed but failed to import: %s", module, exc)
        return None
    return getattr(_torch(), attr, None)


def _cuda_mem(i: int) -> float | None:
    return float(_torch().cuda.get_device_properties(i).total_memory) / 2**30


def _generic_probe(kind: str, module: str | None, hint: str, half: str = "bfloat16") -> Probe:
    """A probe for a backend exposed as ``torch.<kind>`` (after importing ``module`` when given)."""

    def backend() -> Any | None:
        if module is not None:
            return _vendor_backend(module, kind)
        return getattr(_torch(), kind, None)

    def available() -> bool:
        b = backend()
        return bool(b is not None and b.is_available())

    def count() -> int:
        b = backend()
        return int(b.device_count()) if b is not None and b.is_available() else 0

    def name(i: int) -> str:
        b = backend()
        getter = getattr(b, "get_device_name", None)
        return str(getter(i)) if getter else kind

    def memory(i: int) -> float | None:
        b = backend()
        props = getattr(b, "get_device_properties", None)
        total = getattr(props(i), "total_memory", None) if props else None
        return float(total) / 2**30 if total else None

    def bf16() -> bool:
        b = backend()
        check = getattr(b, "is_bf16_supported", None)
        return bool(check()) if check else half == "bfloat16"

    return Probe(kind, available, count, name, memory, bf16, half, hint)


def _cuda_probe() -> Probe:
    def available() -> bool:
        return bool(_torch().cuda.is_available())

    return Probe(
        kind="cuda",
        available=available,
        count=lambda: int(_torch().cuda.device_count()),
        name=lambda i: str(_torch().cuda.get_device_name(i)),
        memory_gb=_cuda_mem,
        supports_bf16=lambda: bool(_torch().cuda.is_bf16_supported()),
        install_hint="Install a CUDA (or ROCm) build of torch and the NVIDIA/AMD driver.",
    )


def _mps_probe() -> Probe:
    def available() -> bool:
        mps = getattr(_torch().backends, "mps", None)
        return bool(mps is not None and mps.is_available())

    return Probe(
        kind="mps",
        available=available,
        count=lambda: 1 if available() else 0,
        name=lambda i: f"Apple {platform.machine()} GPU",
        memory_gb=lambda i: None,
        # Gemma-family models overflow in float16; bf16 works on MPS with macOS 14+ and torch >= 2.3.
        supports_bf16=lambda: True,
        install_hint="Use macOS 14+ on Apple silicon with torch >= 2.3.",
    )


def _cpu_probe() -> Probe:
    return Probe(
        kind="cpu",
        available=lambda: True,
        count=lambda: 1,
        name=lambda i: platform.processor() or platform.machine() or "cpu",
        memory_gb=lambda i: None,
        supports_bf16=lambda: False,  # bf16 on most CPUs is slower than float32; float32 is the safe default
        install_hint="",
    )


def default_probes() -> list[Probe]:
    """The probe table in priority order (first available wins)."""
    return [
        _cuda_probe(),
        _generic_probe(
            "npu", "torch_npu", "Install torch_npu matching your torch and the Ascend CANN toolkit."
        ),
        _generic_probe(
            "mlu", "torch_mlu", "Install torch_mlu matching your torch and the Cambricon driver.", "float16"
        ),
        _generic_probe("xpu", None, "Install a torch build with XPU support and the Intel GPU driver."),
        _mps_probe(),
        _cpu_probe(),
    ]


def parse_device(spec: str, kinds: Sequence[str]) -> tuple[str, int | None]:
    """Split ``cuda:1`` into ``('cuda', 1)``; names the valid kinds when ``spec`` is unknown."""
    kind, _, idx = spec.strip().lower().partition(":")
    kind = look_up_option(kind, kinds, "device")
    if not idx:
        return kind, None
    if not idx.isdigit():
        raise ConfigError(f"Bad device index in '{spec}'.", f"Write it as '{kind}' or '{kind}:0'.")
    return kind, int(idx)


def pick_attention(kind: str, dtype: str, module_exists: Callable[[str], bool] = has_module) -> str:
    """flash-attention 2 on CUDA with a half dtype when installed, else PyTorch SDPA, else eager."""
    if kind == "cuda" and dtype in ("bfloat16", "float16") and module_exists("flash_attn"):
        return "flash_attention_2"
    return "sdpa" if hasattr(_torch().nn.functional, "scaled_dot_product_attention") else "eager"


def pick_compile(kind: str, module_exists: Callable[[str], bool] = has_module) -> tuple[str | None, str]:
    """(``torch.compile`` backend, graph mode) safe on ``kind``: inductor on CUDA/ROCm, XPU and CPU;
    ``aot_eager`` on MPS (inductor's Metal path is partial); torchair (Ascend graph mode) on NPU when
    installed; off on MLU (Cambricon's inductor support is partial) and otherwise."""
    if kind in ("cuda", "xpu", "cpu"):
        return "inductor", "cudagraphs" if kind == "cuda" else "eager"
    if kind == "mps":
        return "aot_eager", "eager"
    if kind == "npu" and module_exists("torchair"):
        return "torchair", "torchair"
    return None, "eager"


def compile_module(module: Any, device: DeviceInfo) -> Any:
    """``torch.compile`` with the backend that is safe on ``device``, or the module as it is when none is."""
    if device.compile_backend is None:
        logger.warning("torch.compile is off on %s (no safe backend); running eagerly", device.kind)
        return module
    if device.compile_backend == "torchair":
        torchair = importlib.import_module("torchair")
        return _torch().compile(module, backend=torchair.get_npu_backend())
    return _torch().compile(module, backend=device.compile_backend)


def _xccl_available() -> bool:
    check = getattr(_torch().distributed, "is_xccl_available", None)  # torch >= 2.8 built with XPU
    return bool(check and check())


def pick_backend(
    kind: str,
    xccl_available: Callable[[], bool] = _xccl_available,
    module_exists: Callable[[str], bool] = has_module,
) -> str:
    """nccl on CUDA/ROCm, hccl on Ascend NPU, cncl on Cambricon MLU; on Intel XPU xccl when torch has it,
    else ccl from oneccl_bindings_for_pytorch; gloo otherwise (CPU, MPS, an XPU without either)."""
    if kind in BACKENDS:
        return BACKENDS[kind]
    if kind == "xpu" and _safe(xccl_available):
        return "xccl"
    if kind == "xpu" and module_exists("oneccl_bindings_for_pytorch"):
        return "ccl"
    return "gloo"


def join_process_group(device: DeviceInfo) -> None:
    """Make ``device`` this process's current one and join the process group torchrun describes."""
    dist = _torch().distributed
    setter = getattr(getattr(_torch(), device.kind, None), "set_device", None)
    if device.index is not None and setter is not None:
        setter(device.index)  # collectives (NCCL, HCCL, ...) run on the current device
    backend = device.distributed_backend
    if backend == "ccl":
        importlib.import_module("oneccl_bindings_for_pytorch")  # registers the ccl backend
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)


def autocast(device: DeviceInfo, amp: bool) -> AbstractContextManager[Any]:
    """``torch.autocast`` in :meth:`DeviceInfo.autocast_dtype`'s dtype, or a no-op when ``amp`` is off."""
    dtype = device.autocast_dtype(amp)
    if dtype is None:
        return nullcontext()
    torch = _torch()
    return torch.autocast(device.kind, dtype=getattr(torch, dtype))


def grad_scaler(device: DeviceInfo, amp_dtype: str | None) -> torch.amp.GradScaler:
    """The loss scaler for training in ``amp_dtype``: enabled only where :meth:`DeviceInfo.grad_scaler_kind`
    says so, else disabled (``scale``/``step`` pass through; its state is empty). A device whose stack
    has no GradScaler trains unscaled, with a warning."""
    torch = _torch()
    kind = device.grad_scaler_kind(amp_dtype)
    try:
        return torch.amp.GradScaler(device.kind, enabled=kind is not None)
    except (RuntimeError, ValueError) as exc:  # e.g. a vendor device without scaler support
        logger.warning("no gradient scaler for %s (%s); fp16 training runs unscaled", device.kind, exc)
        return torch.amp.GradScaler(device.kind, enabled=False)


def resolve_device(
    device: str | None = None,
    dtype: str | None = None,
    attn_implementation: str | None = None,
    probes: Sequence[Probe] | None = None,
    module_exists: Callable[[str], bool] = has_module,
) -> DeviceInfo:
    """Choose the device (``device`` overrides detection), its dtype and its attention implementation."""
    table = list(probes) if probes is not None else default_probes()
    by_kind = {p.kind: p for p in table}
    found = tuple(p.kind for p in table if _safe(p.available))

    if device:
        kind, index = parse_device(device, list(by_kind))
        probe = by_kind[kind]
        if kind not in found:
            raise DeviceError(
                f"Device '{device}' was requested but is not available (found: {', '.join(found)}).",
                f"{probe.install_hint} Or pass --device {found[0]}.".strip(),
            )
        n = _safe(probe.count) or 0
        if index is not None and index >= max(n, 1):
            raise DeviceError(
                f"Device '{device}' does not exist; {n} {kind} device(s) found.", f"Use {kind}:0."
            )
    else:
        probe = next(p for p in table if p.kind in found)
        kind, index = probe.kind, (0 if probe.kind not in ("cpu", "mps") else None)

    bf16 = bool(_safe(probe.supports_bf16))
    if dtype:
        chosen_dtype = look_up_option(dtype, DTYPES, "dtype")
    elif kind == "cpu":
        chosen_dtype = "float32"
    else:
        chosen_dtype = probe.half_dtype if bf16 else "float16"

    attn = (
        look_up_option(attn_implementation, ATTENTION, "attention implementation")
        if attn_implementation
        else pick_attention(kind, chosen_dtype, module_exists)
    )
    if attn == "flash_attention_2" and not (kind == "cuda" and module_exists("flash_attn")):
        raise ConfigError(
            "flash_attention_2 needs a CUDA device and the flash-attn package.",
            "pip install flash-attn on a CUDA machine, or use --attn sdpa.",
        )
    i = index or 0
    compile_backend, graph_mode = pick_compile(kind, module_exists)
    return DeviceInfo(
        kind=kind,
        index=index,
        name=str(_safe(lambda: probe.name(i)) or kind),
        dtype=chosen_dtype,
        attn_implementation=attn,
        memory_gb=_safe(lambda: probe.memory_gb(i)),
        found=found,
        bf16=bf16,
        compile_backend=compile_backend,
        graph_mode=graph_mode,
        memory_fraction=MEMORY_FRACTION.get(kind),
    )


def _safe(fn: Callable[[], Any]) -> Any:
    """Call a probe function; a vendor stack that throws counts as 'not there'."""
    try:
        return fn()
    except Exception as exc:
        logger.debug("device probe failed: %s", exc)
        return None
