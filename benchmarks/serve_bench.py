"""Serving latency and throughput: time to first token, time per output token, tokens/s and peak memory at
1, 4, 16 and 64 streaming clients, for

  (a) the in-process engine with request batching vs without (``MEDVLAB_MAX_BATCH_SIZE`` 8 vs 1), and
  (b) the lab in front of a remote engine (``--engine openai``) vs the same engine called directly — the
      lab's own overhead, which should stay within 5 % of throughput and 15 ms of time to first token.

Every server is a real ``medvlab serve`` process on a loopback port with the tiny-but-wider Gemma 3
(hidden 256, 4 layers, random weights, built offline); the remote engine of (b) is itself a medvlab (the
machine has no GPU for vLLM). Clients stream answers of exactly 32 tokens (``min_tokens``) through the
OpenAI-compatible API. Loopback only, bounded in count and time.

    python benchmarks/serve_bench.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from load_bench import free_port

TOKENS = 32
CLIENTS = tuple(int(n) for n in os.environ.get("SERVE_BENCH_CLIENTS", "1,4,16,64").split(","))
PARTS = os.environ.get("SERVE_BENCH_PARTS", "ab")
"""``SERVE_BENCH_PARTS=b SERVE_BENCH_CLIENTS=1,16`` runs a subset."""


@dataclass
class Load:
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds


def serve(model: Path, port: int, data: Path, *args: str, batch: int = 8) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEDVLAB_MAX_BATCH_SIZE": str(batch),
        "MEDVLAB_MAX_CONCURRENCY": "64",
        "MEDVLAB_MAX_QUEUE": "128",
        "MEDVLAB_DATA_DIR": str(data),
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "medvlab.cli.main", "serve", "--model", str(model), "--no-ui"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(900):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("status") == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def stream_once(url: str, model: str, i: int, load: Load, lock: threading.Lock) -> None:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": TOKENS,
        "min_tokens": TOKENS,
        "messages": [{"role": "user", "content": f"Client {i}: describe a normal chest X-ray."}],
    }
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        if r.status_code != 200:
            with lock:
                load.errors.append(str(r.status_code))
            return
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            delta = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if delta:
                last = time.perf_counter()
                first = first or last
    with lock:
        if first is not None and last is not None:
            load.ttft.append(first - t0)
            if tokens > 1:
                load.tpot.append((last - first) / (tokens - 1))
        load.tokens += tokens


def run(url: str, model: str, clients: int, pids: list[int]) -> Load:
    load, lock = Load(), threading.Lock()
    procs = [psutil.Process(p) for p in pids]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            rss = sum(p.memory_info().rss for p in procs) / 2**20
            load.peak_rss_mb = max(load.peak_rss_mb, rss)

    threading.Thread(target=watch, daemon=True).start()
    threads = [threading.Thread(target=stream_once, args=(url, model, i, load, lock)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    load.seconds = time.perf_counter() - t0
    done.set()
    if load.errors:
        raise SystemExit(f"{len(load.errors)} request(s) failed: {load.errors[:3]}")
    return load


def row(name: str, clients: int, x: Load) -> str:
    ttft, tpot = statistics.median(x.ttft) * 1000, statistics.median(x.tpot) * 1000
    return f"{name:>22s} {clients:4d} {ttft:9.0f} {tpot:9.1f} {x.throughput:9.1f} {x.peak_rss_mb:8.0f}"


def main() -> None:
    from medvlab.vlm.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="medvlab-serve-bench-") as tmp:
        model = build_tiny_model(Path(tmp) / "model", hidden_size=256, layers=4)
        name = str(model)
        results: dict[tuple[str, int], Load] = {}
        # (a) in-process, batched vs unbatched
        for batch in (1, 8) if "a" in PARTS else ():
            port = free_port()
            proc = serve(model, port, Path(tmp) / f"a{batch}", batch=batch)
            url = f"http://127.0.0.1:{port}"
            try:
                run(url, name, 1, [proc.pid])  # warm-up
                for n in CLIENTS:
                    results[(f"in-process batch<={batch}", n)] = run(url, name, n, [proc.pid])
                    print(
                        row(f"in-process batch<={batch}", n, results[(f"in-process batch<={batch}", n)]),
                        file=sys.stderr,
                    )
            finally:
                proc.terminate()
                proc.wait(30)
        # (b) the same engine directly vs with the lab in front
        if "b" not in PARTS:
            report(results)
            return
        engine_port, front_port = free_port(), free_port()
        engine = serve(model, engine_port, Path(tmp) / "engine")
        engine_url = f"http://127.0.0.1:{engine_port}"
        front = serve(
            model, front_port, Path(tmp) / "front", "--engine", "openai", "--engine-url", f"{engine_url}/v1"
        )
        front_url = f"http://127.0.0.1:{front_port}"
        try:
            run(engine_url, name, 1, [engine.pid])
            run(front_url, name, 1, [engine.pid, front.pid])
            for n in CLIENTS:
                results[("engine directly", n)] = run(engine_url, name, n, [engine.pid])
                results[("lab in front", n)] = run(front_url, name, n, [engine.pid, front.pid])
                for key in ("engine directly", "lab in front"):
                    print(row(key, n, results[(key, n)]), file=sys.stderr)
        finally:
            for p in (front, engine):
                p.terminate()
                p.wait(30)
    report(results)


def report(results: dict[tuple[str, int], Load]) -> None:
    header = f"{'':>22s} {'n':>4s} {'TTFT ms':>9s} {'TPOT ms':>9s} {'tok/s':>9s} {'RSS MB':>8s}"
    if "a" in PARTS:
        report_a(results, header)
    if "b" in PARTS:
        report_b(results, header)


def report_a(results: dict[tuple[str, int], Load], header: str) -> None:
    print(f"\n(a) in-process engine, answers of {TOKENS} tokens (median TTFT / TPOT)")
    print(header)
    for n in CLIENTS:
        for b in (1, 8):
            print(row(f"in-process batch<={b}", n, results[(f"in-process batch<={b}", n)]))
        ratio = (
            results[("in-process batch<=8", n)].throughput / results[("in-process batch<=1", n)].throughput
        )
        print(f"{'batching / none':>22s} {n:4d} {'':>9s} {'':>9s} {ratio:8.2f}x")


def report_b(results: dict[tuple[str, int], Load], header: str) -> None:
    print("\n(b) the lab in front of a remote engine vs the engine directly")
    print(header)
    for n in CLIENTS:
        direct, via = results[("engine directly", n)], results[("lab in front", n)]
        print(row("engine directly", n, direct))
        print(row("lab in front", n, via))
        overhead = (statistics.median(via.ttft) - statistics.median(direct.ttft)) * 1000
        ratio = via.throughput / direct.throughput
        print(f"{'lab / engine':>22s} {n:4d} {overhead:+8.0f}ms {'':>9s} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
