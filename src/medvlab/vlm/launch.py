"""A managed engine: vLLM or SGLang started as a child process with the lab's settings turned into its flags,
watched until healthy, and stopped with the lab.

The lab then talks to it as to any OpenAI-compatible server (:mod:`medvlab.vlm.remote`). Flags follow each
engine's own documentation: vLLM ``vllm serve`` (``--limit-mm-per-prompt`` JSON, ``--enable-lora
--lora-modules name=path``, ``--tensor-parallel-size``, ``--pipeline-parallel-size``,
``--distributed-executor-backend ray``, ``--gpu-memory-utilization``) and SGLang ``python -m
sglang.launch_server`` (``--tp-size``, ``--pp-size``, ``--mem-fraction-static``, ``--lora-paths``). Extra
engine flags pass through unchanged, after ours, so they win.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import httpx

from medvlab.errors import ConfigError, EngineUnavailableError

logger = logging.getLogger(__name__)

SUPPORTED_DEVICES = {"vllm": ("cuda", "xpu", "npu"), "sglang": ("cuda", "npu")}
"""Device kinds (from :mod:`medvlab.devices`) each engine serves on (NPU through vllm-ascend / SGLang's)."""


@dataclass(frozen=True)
class EngineSpec:
    """How to start the engine."""

    engine: Literal["vllm", "sglang"]
    model: str
    port: int
    host: str = "127.0.0.1"
    dtype: str | None = None
    max_model_len: int | None = None
    images_per_prompt: int = 32
    """From the lab's ``max_slices``: a volume sends that many pictures in one prompt."""
    adapters: dict[str, str] = field(default_factory=dict)
    """LoRA adapters served at once, by the name a request's ``model`` picks them with."""
    max_lora_rank: int = 64
    lora_slots: int = 4
    """Adapters the engine holds at once, for those loaded at run time too (0: LoRA off unless
    ``adapters`` are given). vLLM runs with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` for ``/v1/adapters``."""
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    ray: bool = False
    """Spread over several machines with Ray (``--distributed-executor-backend ray``; vLLM)."""
    memory_fraction: float | None = None
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tensor_parallel < 1 or self.pipeline_parallel < 1:
            raise ConfigError("Parallel sizes must be at least 1.", "Pass --tensor-parallel-size 1 or more.")
        if self.memory_fraction is not None and not 0 < self.memory_fraction <= 1:
            raise ConfigError(
                f"The memory fraction must be in (0, 1], got {self.memory_fraction}.", "Use e.g. 0.85."
            )
        if self.ray and self.engine != "vllm":
            raise ConfigError("--ray is vLLM's executor backend.", "Use --engine vllm, or drop --ray.")


def command(spec: EngineSpec) -> list[str]:
    """The engine's command line for ``spec``."""
    if spec.engine == "vllm":
        argv = ["vllm", "serve", spec.model, "--host", spec.host, "--port", str(spec.port)]
        argv += ["--limit-mm-per-prompt", json.dumps({"image": spec.images_per_prompt})]
        if spec.dtype:
            argv += ["--dtype", spec.dtype]
        if spec.max_model_len:
            argv += ["--max-model-len", str(spec.max_model_len)]
        if spec.adapters or spec.lora_slots:
            argv += [
                "--enable-lora",
                "--max-lora-rank",
                str(spec.max_lora_rank),
                "--max-loras",
                str(max(len(spec.adapters), spec.lora_slots)),
            ]
        if spec.adapters:
            argv += ["--lora-modules", *(f"{name}={path}" for name, path in spec.adapters.items())]
        argv += ["--tensor-parallel-size", str(spec.tensor_parallel)]
        argv += ["--pipeline-parallel-size", str(spec.pipeline_parallel)]
        if spec.ray:
            argv += ["--distributed-executor-backend", "ray"]
        if spec.memory_fraction is not None:
            argv += ["--gpu-memory-utilization", f"{spec.memory_fraction:g}"]
    else:
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", spec.model]
        argv += ["--host", spec.host, "--port", str(spec.port), "--enable-multimodal"]
        if spec.dtype:
            argv += ["--dtype", spec.dtype]
        if spec.max_model_len:
            argv += ["--context-length", str(spec.max_model_len)]
        if spec.adapters or spec.lora_slots:
            argv += ["--enable-lora", "--max-lora-rank", str(spec.max_lora_rank)]
            argv += ["--max-loras-per-batch", str(max(len(spec.adapters), spec.lora_slots))]
        if spec.adapters:
            argv += ["--lora-paths", *(f"{name}={path}" for name, path in spec.adapters.items())]
        elif spec.lora_slots:  # without a first adapter SGLang must be told where LoRA goes
            argv += ["--lora-target-modules", "all"]
        argv += ["--tp-size", str(spec.tensor_parallel), "--pp-size", str(spec.pipeline_parallel)]
        if spec.memory_fraction is not None:
            argv += ["--mem-fraction-static", f"{spec.memory_fraction:g}"]
    return [*argv, *spec.extra]


def environment(spec: EngineSpec) -> dict[str, str]:
    """The engine's environment: ours, plus vLLM's switch for loading adapters at run time."""
    env = dict(os.environ)
    if spec.engine == "vllm" and (spec.adapters or spec.lora_slots):
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    return env


def check_installed(engine: str, device_kind: str) -> None:
    """One clear error when the engine is not installed or this machine has no device it serves on."""
    installed = (
        shutil.which("vllm") is not None
        if engine == "vllm"
        else importlib.util.find_spec("sglang") is not None
    )
    if not installed:
        extra = "vllm" if engine == "vllm" else "sglang"
        raise EngineUnavailableError(
            f"{engine} is not installed.",
            f"pip install 'medvlab[{extra}]' on a machine with a supported GPU, "
            "or serve in-process without --engine.",
        )
    if device_kind not in SUPPORTED_DEVICES[engine]:
        raise EngineUnavailableError(
            f"{engine} has no supported device here (found {device_kind}; it serves on "
            f"{', '.join(SUPPORTED_DEVICES[engine])}).",
            "Run it on a GPU machine and point the lab at it with --engine openai --engine-url, "
            "or serve in-process without --engine.",
        )


class ManagedEngine:
    """The engine as a child process: ``start()`` returns once it answers ``/health``; ``stop()`` ends it."""

    def __init__(self, spec: EngineSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.spec.port}/v1"

    def start(self, timeout_s: float = 1800.0, progress: Callable[[float, str], None] | None = None) -> str:
        """Start, wait for health (``progress(seconds, last log line)`` meanwhile); the API's URL."""
        argv = command(self.spec)
        logger.info("starting %s: %s", self.spec.engine, " ".join(argv))
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=environment(self.spec)
        )
        started = time.monotonic()
        health = f"http://{self.spec.host}:{self.spec.port}/health"
        while time.monotonic() - started < timeout_s:
            code = self.proc.poll()
            if code is not None:
                raise EngineUnavailableError(
                    f"{self.spec.engine} exited with code {code} while starting: {self.last_line()}",
                    f"See its log at {self.log_path}.",
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=2).status_code == 200:
                    return self.url
            if progress is not None:
                progress(time.monotonic() - started, self.last_line())
            time.sleep(0.5)
        self.stop()
        raise EngineUnavailableError(
            f"{self.spec.engine} did not become healthy within {timeout_s:g} s.",
            f"See its log at {self.log_path}.",
        )

    def last_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_bytes().decode("utf-8", "replace").strip().splitlines()
            return lines[-1][-200:] if lines else ""
        return ""

    def stop(self, grace_s: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()


def adapter_names(paths: Sequence[str]) -> dict[str, str]:
    """Adapters by the name requests use: the folder's name (made unique)."""
    names: dict[str, str] = {}
    for p in paths:
        base = Path(p).name or "adapter"
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names[name] = str(Path(p).resolve())
    return names
