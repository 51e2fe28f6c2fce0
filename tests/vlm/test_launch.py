"""Managed engines: the exact flags, started as child processes (stand-ins that record their argv and answer
/health, as vLLM and SGLang do), stopped with the lab; clear refusals where an engine cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medvlab.errors import ConfigError, EngineUnavailableError
from medvlab.vlm.launch import EngineSpec, ManagedEngine, adapter_names, check_installed, command
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

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"{}" if self.path == "/health" else json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
        "--enable-lora", "--max-lora-rank", "64", "--max-loras", "2",
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
        "--lora-paths", "a=/x", "--tp-size", "4", "--pp-size", "1", "--mem-fraction-static", "0.7",
    ]  # fmt: skip
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
