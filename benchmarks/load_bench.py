"""Serving throughput at 1, 4 and 16 concurrent streaming clients, with and without request batching.

A real `medvlab serve` process (tiny-but-wider Gemma 3: hidden 256, 4 layers, random weights, built
offline) on a loopback port; every client streams answers of exactly 48 tokens (`min_tokens`) through the
OpenAI-compatible API, 4 requests each. Loopback only, bounded in count and time.

    python benchmarks/load_bench.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

TOKENS = 48
PER_CLIENT = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(model: Path, batch: int, port: int, data: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEDVLAB_MAX_BATCH_SIZE": str(batch),
        "MEDVLAB_MAX_CONCURRENCY": "16",
        "MEDVLAB_MAX_QUEUE": "64",
        "MEDVLAB_DATA_DIR": str(data),
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medvlab.cli.main",
            "serve",
            "--model",
            str(model),
            "--no-ui",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def client(url: str, i: int, tokens: list[int], errors: list[str]) -> None:
    for n in range(PER_CLIENT):
        body = {
            "model": "medvlab",
            "stream": True,
            "max_tokens": TOKENS,
            "min_tokens": TOKENS,
            "messages": [{"role": "user", "content": f"Client {i} request {n}: describe a chest X-ray."}],
        }
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as r:
            if r.status_code != 200:
                errors.append(str(r.status_code))
                continue
            for line in r.iter_lines():
                if line.startswith("data: {") and '"usage"' in line:
                    tokens.append(json.loads(line[6:])["usage"]["completion_tokens"])


def main() -> None:
    from medvlab.vlm.tiny import build_tiny_model

    results: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="medvlab-load-") as tmp:
        model = build_tiny_model(Path(tmp) / "model", hidden_size=256, layers=4)
        for batch in (1, 8):
            port = free_port()
            proc = start(model, batch, port, Path(tmp) / f"data{batch}")
            url = f"http://127.0.0.1:{port}"
            try:
                client(url, -1, [], [])  # warm-up
                for clients in (1, 4, 16):
                    tokens: list[int] = []
                    errors: list[str] = []
                    threads = [
                        threading.Thread(target=client, args=(url, i, tokens, errors)) for i in range(clients)
                    ]
                    t0 = time.perf_counter()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join(600)
                    seconds = time.perf_counter() - t0
                    if errors:
                        raise SystemExit(f"{len(errors)} request(s) failed: {errors[:3]}")
                    results[(batch, clients)] = sum(tokens) / seconds
                    health = httpx.get(f"{url}/healthz").json()["load"]
                    print(
                        f"batch<={batch} clients={clients}: {sum(tokens)} tokens in {seconds:.1f}s, "
                        f"largest batch {health['largest_batch']}",
                        file=sys.stderr,
                    )
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"\nstreaming throughput, tokens/s (answers of {TOKENS} tokens, {PER_CLIENT} per client)")
    print(f"{'clients':>8s} {'no batching':>12s} {'batching':>10s} {'ratio':>7s}")
    for clients in (1, 4, 16):
        a, b = results[(1, clients)], results[(8, clients)]
        print(f"{clients:8d} {a:12.1f} {b:10.1f} {b / a:6.2f}x")


if __name__ == "__main__":
    main()
