"""Serving latency and throughput: time to first token, time per output token, tokens/s and peak memory at
1, 4, 16 and 64 streaming clients, for

  (a) the in-process engine with request batching vs without (``MEDVLAB_MAX_BATCH_SIZE`` 8 vs 1), and
  (b) the lab in front of a remote engine (``--engine openai``) vs the same engine called directly — the
      lab's own overhead, which should stay within 5 % of throughput and 15 ms of time to first token —
      and the lab's own CPU per request and per token (the cost a GPU machine pays on its host cores).

Every server is a real ``medvlab serve`` process on a loopback port with the tiny-but-wider Gemma 3
(hidden 256, 4 layers, random weights, built offline); the remote engine of (b) is itself a medvlab (the
machine has no GPU for vLLM). Clients stream answers of exactly 32 tokens (``min_tokens``) through the
OpenAI-compatible API.

Load is closed-loop and sustained, as in vLLM's and SGLang's serving benchmarks: each of N clients sends
its next request as soon as the last one ends, ``ceil(REQUESTS / N)`` times (at least 2). A single burst
of N requests measures mostly how the engine's batcher happened to group them (a few ms of arrival spread
splits a batch), which made one-burst ratios swing 0.6–1.3× run to run. Each (b) figure is ``ROUNDS``
interleaved direct / in-front pairs; the ratio printed is the median pair's, with the range.
Loopback only, bounded in count and time.

On a machine without a GPU the engine computes on the same CPU cores as the lab, so every millisecond the
lab spends relaying is taken from the engine: that is the worst case, not the deployment the lab is made
for (the engine's work on its own device, the lab on the host). ``SERVE_BENCH_ENGINE_CPUS`` (e.g. ``1``)
pins the engine to those cores in both the direct and the in-front runs and the lab and the clients to the
others, which measures the lab's own overhead as a GPU host would see it.

    python benchmarks/serve_bench.py
    SERVE_BENCH_PARTS=b SERVE_BENCH_CLIENTS=1,16 SERVE_BENCH_ROUNDS=5 python benchmarks/serve_bench.py
    SERVE_BENCH_PARTS=b SERVE_BENCH_ENGINE_CPUS=1 python benchmarks/serve_bench.py
"""

from __future__ import annotations

import json
import math
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
REQUESTS = int(os.environ.get("SERVE_BENCH_REQUESTS", "32"))
ROUNDS = int(os.environ.get("SERVE_BENCH_ROUNDS", "3"))
ENGINE_CPUS = {int(c) for c in os.environ.get("SERVE_BENCH_ENGINE_CPUS", "").split(",") if c.strip()}
"""Cores the engine is pinned to (the lab and the clients get the others); empty: all share all cores."""
IMAGE_URI: str | None = None
"""A picture (data URI) every question carries; ``gpu_serve_bench.py`` sets one."""


@dataclass
class Load:
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    """CPU seconds (user + system) of the measured process — the lab's, in the in-front runs."""

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds


def serve(
    model: Path,
    port: int,
    data: Path,
    *args: str,
    batch: int = 8,
    wait_s: float = 90,
    cpus: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    """A ``medvlab serve`` process, on the cores ``cpus`` when given (set before it starts any thread)."""
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
        [*command, "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    for _ in range(int(wait_s * 10)):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("status") == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def stream_once(client: httpx.Client, model: str, i: int, load: Load, lock: threading.Lock) -> None:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": TOKENS,
        "min_tokens": TOKENS,
        "stream_options": {"include_usage": True},  # vLLM sends the token counts only when asked
        "messages": [{"role": "user", "content": f"Client {i}: describe a normal chest X-ray."}],
    }
    if IMAGE_URI:
        text = {"type": "text", "text": body["messages"][0]["content"]}
        body["messages"][0]["content"] = [{"type": "image_url", "image_url": {"url": IMAGE_URI}}, text]
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            r.read()
            with lock:
                load.errors.append(f"{r.status_code} {r.text[:300]}")
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
        load.requests += 1


def run(url: str, model: str, clients: int, pids: list[int], cpu_of: int | None = None) -> Load:
    """``clients`` closed-loop clients, ``ceil(REQUESTS / clients)`` (≥ 2) requests each."""
    load, lock = Load(), threading.Lock()
    procs = [psutil.Process(p) for p in pids]
    done = threading.Event()
    each = max(2, math.ceil(REQUESTS / clients))

    def watch() -> None:
        while not done.wait(0.05):
            rss = sum(p.memory_info().rss for p in procs) / 2**20
            load.peak_rss_mb = max(load.peak_rss_mb, rss)

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            for k in range(each):
                stream_once(http, model, i * each + k, load, lock)

    def cpu() -> float:
        return sum(psutil.Process(cpu_of).cpu_times()[:2]) if cpu_of else 0.0

    threading.Thread(target=watch, daemon=True).start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    cpu0, t0 = cpu(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    load.seconds, load.cpu_s = time.perf_counter() - t0, cpu() - cpu0
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
        if "a" in PARTS:
            report_a(part_a(model, Path(tmp)))
        if "b" in PARTS:
            report_b(part_b(model, Path(tmp)))


def part_a(model: Path, tmp: Path) -> dict[tuple[int, int], Load]:
    """The in-process engine, batched (≤ 8) and not."""
    results: dict[tuple[int, int], Load] = {}
    for batch in (1, 8):
        port = free_port()
        proc = serve(model, port, tmp / f"a{batch}", batch=batch)
        url = f"http://127.0.0.1:{port}"
        try:
            run(url, str(model), 1, [proc.pid])  # warm-up
            for n in CLIENTS:
                results[(batch, n)] = run(url, str(model), n, [proc.pid])
                print(row(f"in-process batch<={batch}", n, results[(batch, n)]), file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(30)
    return results


def part_b(model: Path, tmp: Path) -> dict[int, list[tuple[Load, Load]]]:
    """The same engine called directly and with the lab in front, ``ROUNDS`` interleaved pairs per N."""
    engine_port, front_port = free_port(), free_port()
    cores = set(os.sched_getaffinity(0))
    rest = cores - ENGINE_CPUS
    if ENGINE_CPUS:
        if not rest or ENGINE_CPUS - cores:
            raise SystemExit(f"SERVE_BENCH_ENGINE_CPUS={sorted(ENGINE_CPUS)} must leave cores for the lab")
        os.sched_setaffinity(0, rest)  # the clients (this process) beside the lab
    engine = serve(model, engine_port, tmp / "engine", cpus=ENGINE_CPUS or None)
    engine_url = f"http://127.0.0.1:{engine_port}"
    front = serve(
        model,
        front_port,
        tmp / "front",
        "--engine",
        "openai",
        "--engine-url",
        f"{engine_url}/v1",
        cpus=rest if ENGINE_CPUS else None,
    )
    front_url = f"http://127.0.0.1:{front_port}"
    pairs: dict[int, list[tuple[Load, Load]]] = {}
    try:
        run(engine_url, str(model), 4, [engine.pid])
        run(front_url, str(model), 4, [engine.pid, front.pid])
        for n in CLIENTS:
            for _ in range(ROUNDS):
                direct = run(engine_url, str(model), n, [engine.pid])
                via = run(front_url, str(model), n, [engine.pid, front.pid], cpu_of=front.pid)
                pairs.setdefault(n, []).append((direct, via))
                print(row("engine directly", n, direct), file=sys.stderr)
                print(row("lab in front", n, via), file=sys.stderr)
    finally:
        for p in (front, engine):
            p.terminate()
            p.wait(30)
    return pairs


HEADER = f"{'':>22s} {'n':>4s} {'TTFT ms':>9s} {'TPOT ms':>9s} {'tok/s':>9s} {'RSS MB':>8s}"


def report_a(results: dict[tuple[int, int], Load]) -> None:
    print(f"\n(a) in-process engine, answers of {TOKENS} tokens (median TTFT / TPOT)")
    print(HEADER)
    for n in CLIENTS:
        for b in (1, 8):
            print(row(f"in-process batch<={b}", n, results[(b, n)]))
        ratio = results[(8, n)].throughput / results[(1, n)].throughput
        print(f"{'batching / none':>22s} {n:4d} {'':>9s} {'':>9s} {ratio:8.2f}x")


def report_b(pairs: dict[int, list[tuple[Load, Load]]]) -> None:
    where = (
        f"engine on cores {sorted(ENGINE_CPUS)}, lab and clients on the others"
        if ENGINE_CPUS
        else "engine, lab and clients sharing every core"
    )
    print(
        f"\n(b) the lab in front of a remote engine vs the engine directly, median of {ROUNDS} pairs",
        f"({where})",
    )
    print(HEADER + f" {'lab CPU ms/req':>15s} {'µs/token':>9s}")
    for n, runs in pairs.items():
        ratios = sorted((via.throughput / direct.throughput, i) for i, (direct, via) in enumerate(runs))
        ratio, mid = ratios[len(ratios) // 2]
        direct, via = runs[mid]
        ttft = statistics.median(
            (statistics.median(v.ttft) - statistics.median(d.ttft)) * 1000 for d, v in runs
        )
        cpu_ms = statistics.median(v.cpu_s * 1000 / v.requests for _, v in runs)
        cpu_us = statistics.median(v.cpu_s * 1e6 / v.tokens for _, v in runs)
        print(row("engine directly", n, direct))
        print(row("lab in front", n, via) + f" {cpu_ms:15.1f} {cpu_us:9.0f}")
        spread = f"({ratios[0][0]:.2f}–{ratios[-1][0]:.2f})"
        print(f"{'lab / engine':>22s} {n:4d} {ttft:+7.0f}ms {'':>9s} {ratio:8.2f}x  {spread}")


if __name__ == "__main__":
    main()
