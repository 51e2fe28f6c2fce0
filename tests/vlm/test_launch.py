"""Managed engines: the exact flags, started as child processes (stand-ins that record their argv and answer
/health, as vLLM and SGLang do), stopped with the lab; clear refusals where an engine cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from medvlab.errors import ConfigError, EngineUnavailableError
from medvlab.vlm.launch import (
    EngineSpec,
    ManagedEngine,
    adapter_names,
    check_installed,
    command,
    environment,
)
from tests.helpers import free_port

STAND_IN = """
import http.server, json, os, sys
argv = sys.argv[1:]
with open(os.environ["STANDIN_ARGV"], "w") as fh:
    json.dump(argv, fh)
if os.environ.get("STANDIN_FAIL"):
    print("CUDA error: no kernel image is available", flush=True)
    sys.exit(3)
port = int(argv[argv.index("--port") + 1])

loras = {}

class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/adapters":  # not a medvlab: vLLM has no such route
            return self.reply(404, b'{"detail": "Not Found"}')
        models = [{"id": "m"}] + [{"id": n, "parent": "m"} for n in loras]
        self.reply(200, b"{}" if self.path == "/health" else json.dumps({"data": models}).encode())

    def do_POST(self):  # vLLM's run-time LoRA API (only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING") != "True":
            return self.reply(404, b'{"detail": "Not Found"}')
        if self.path == "/v1/load_lora_adapter":
            loras[body["lora_name"]] = body["lora_path"]
        elif self.path == "/v1/unload_lora_adapter" and body["lora_name"] in loras:
            del loras[body["lora_name"]]
        else:
            return self.reply(404, b'{"error": {"message": "no such adapter"}}')
        self.reply(200, b"Success")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `vllm` executable on PATH and an `sglang.launch_server` module on PYTHONPATH, both the stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    vllm = bin_dir / "vllm"
    vllm.write_text(f"#!{sys.executable}\n" + STAND_IN)
    vllm.chmod(0o755)
    pkg = tmp_path / "site" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(STAND_IN)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("STANDIN_ARGV", str(tmp_path / "argv.json"))
    return tmp_path / "argv.json"


def test_vllm_flags() -> None:
    spec = EngineSpec(
        "vllm",
        "google/medgemma-4b-it",
        port=8123,
        dtype="bfloat16",
        max_model_len=8192,
        images_per_prompt=24,
        adapters={"cxr": "/a/cxr", "ct": "/a/ct"},
        tensor_parallel=2,
        pipeline_parallel=2,
        ray=True,
        memory_fraction=0.85,
        extra=("--enforce-eager",),
    )
    assert command(spec) == [
        "vllm", "serve", "google/medgemma-4b-it", "--host", "127.0.0.1", "--port", "8123",
        "--limit-mm-per-prompt", '{"image": 24}', "--dtype", "bfloat16", "--max-model-len", "8192",
        "--enable-lora", "--max-lora-rank", "64", "--max-loras", "4",
        "--lora-modules", "cxr=/a/cxr", "ct=/a/ct",
        "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2",
        "--distributed-executor-backend", "ray", "--gpu-memory-utilization", "0.85", "--enforce-eager",
    ]  # fmt: skip


def test_sglang_flags() -> None:
    spec = EngineSpec("sglang", "m", port=9, max_model_len=4096, adapters={"a": "/x"}, tensor_parallel=4,
                      memory_fraction=0.7)  # fmt: skip
    assert command(spec)[1:] == [
        "-m", "sglang.launch_server", "--model-path", "m", "--host", "127.0.0.1", "--port", "9",
        "--enable-multimodal", "--context-length", "4096", "--enable-lora", "--max-lora-rank", "64",
        "--max-loras-per-batch", "4", "--lora-paths", "a=/x",
        "--tp-size", "4", "--pp-size", "1", "--mem-fraction-static", "0.7",
    ]  # fmt: skip
    # LoRA slots for adapters loaded at run time even when none is named at start; 0 turns LoRA off
    bare = command(EngineSpec("sglang", "m", port=9))
    assert bare[bare.index("--max-loras-per-batch") + 1] == "4" and "--lora-target-modules" in bare
    assert "--enable-lora" not in command(EngineSpec("vllm", "m", port=9, lora_slots=0))
    assert environment(EngineSpec("vllm", "m", port=9))["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in environment(
        EngineSpec("vllm", "m", port=9, lora_slots=0)
    )
    with pytest.raises(ConfigError, match="--ray is vLLM's"):
        EngineSpec("sglang", "m", port=9, ray=True)
    with pytest.raises(ConfigError, match="memory fraction"):
        EngineSpec("vllm", "m", port=9, memory_fraction=1.5)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_engine_starts_answers_health_and_stops(engine: str, stand_ins: Path, tmp_path: Path) -> None:
    spec = EngineSpec(engine, "m", port=free_port(), adapters=adapter_names(["/x/cxr", "/y/cxr"]))  # type: ignore[arg-type]
    managed = ManagedEngine(spec, tmp_path / "engine.log")
    seen: list[float] = []
    url = managed.start(timeout_s=60, progress=lambda s, line: seen.append(s))
    try:
        assert url == f"http://127.0.0.1:{spec.port}/v1"
        recorded = json.loads(stand_ins.read_text())
        expected = command(spec)
        assert recorded == (
            expected[1:] if engine == "vllm" else expected[3:]
        )  # the engine got our exact flags
        assert "cxr=/x/cxr" in recorded and "cxr-2=/y/cxr" in recorded
    finally:
        managed.stop()
    assert managed.proc is not None and managed.proc.poll() is not None


def test_an_engine_that_dies_while_starting_says_why(
    stand_ins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STANDIN_FAIL", "1")
    managed = ManagedEngine(EngineSpec("vllm", "m", port=free_port()), tmp_path / "engine.log")
    with pytest.raises(EngineUnavailableError, match="exited with code 3.*no kernel image"):
        managed.start(timeout_s=60)


def test_refused_where_the_engine_cannot_run(stand_ins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_installed("vllm", "cuda")  # the stand-in is on PATH
    with pytest.raises(EngineUnavailableError, match="no supported device here \\(found cpu"):
        check_installed("vllm", "cpu")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineUnavailableError, match="vllm is not installed.*medvlab\\[vllm\\]"):
        check_installed("vllm", "cuda")


def test_serve_with_an_engine_it_cannot_run_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "MEDVLAB_CACHE_DIR": str(tmp_path), "PATH": os.path.dirname(sys.executable)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medvlab.cli.main",
            "serve",
            "--engine",
            "vllm",
            "--model",
            "tiny",
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("error: vllm is not installed") or "no supported device" in run.stderr


def test_adapters_load_and_unload_on_a_running_vllm(
    stand_ins: Path, tmp_path: Path, sft_adapter: Path
) -> None:
    """Through vLLM's run-time LoRA API (the lab turns it on); an adapter that trained the vision tower is
    refused with the merge fix, since vLLM applies LoRA to the language model only."""
    from safetensors.numpy import load_file, save_file

    from medvlab.errors import CapabilityError
    from medvlab.vlm.lora import vision_modules
    from medvlab.vlm.remote import OpenAIBackend

    language_only = tmp_path / "language-only"
    language_only.mkdir()
    (language_only / "adapter_config.json").write_text((sft_adapter / "adapter_config.json").read_text())
    weights = load_file(str(sft_adapter / "adapter_model.safetensors"))
    assert vision_modules(sft_adapter)  # trained with the vision tower (the default)
    save_file({k: v for k, v in weights.items() if "vision" not in k and "projector" not in k},
              str(language_only / "adapter_model.safetensors"))  # fmt: skip
    assert vision_modules(language_only) == []

    managed = ManagedEngine(EngineSpec("vllm", "m", port=free_port()), tmp_path / "engine.log")
    url = managed.start(timeout_s=60)
    try:
        backend = OpenAIBackend(url, "m")
        backend.load_adapter("cxr", str(language_only))
        assert backend.adapters == {"cxr": str(language_only)} and backend.loras.flavor == "vllm"
        served = httpx.get(f"{url}/models").json()["data"]
        assert {"id": "cxr", "parent": "m"} in served  # loaded on the engine itself
        from medvlab.config import GenerationOptions

        assert backend.body([], GenerationOptions(adapter="cxr"))["model"] == "cxr"
        assert backend.body([], GenerationOptions())["model"] == "m"
        with pytest.raises(CapabilityError, match="vision tower.*merge"):
            backend.load_adapter("full", str(sft_adapter))
        backend.unload_adapter("cxr")
        assert backend.adapters == {} and len(httpx.get(f"{url}/models").json()["data"]) == 1
    finally:
        managed.stop()
