"""How many tokens a second one lab process relays from an engine, against the engine called directly.

A GPU engine (vLLM, SGLang) produces tokens far faster than the tiny CPU engine of ``serve_bench.py``, so
the lab's cost per relayed token, not the engine, decides whether the lab keeps up in front of it. Here the
engine is a stand-in that streams OpenAI chat chunks at a fixed pace per answer and costs almost nothing
(pre-encoded events over asyncio streams), so the only thing that differs between the direct and the
in-front runs is the lab. C clients (16 and 64; closed loop, raw sockets) stream answers of T tokens, each
at R tokens a second: the offered load is C x R tokens a second. The lab (``medvlab serve --engine
openai``) is pinned to one core, the stand-in engine and the clients to the others, as on a GPU host where
the engine's work is on the device. Printed per offered load: tokens a second delivered directly and
through the lab, their ratio, the median time to first token of each and the lab's CPU per relayed token.
Loopback only, bounded in time.

    python benchmarks/relay_bench.py
    RELAY_BENCH_CLIENTS=64 RELAY_BENCH_RATES=1000,4000 RELAY_BENCH_SECONDS=6 python benchmarks/relay_bench.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from load_bench import free_port
from serve_bench import serve

CLIENTS = tuple(int(n) for n in os.environ.get("RELAY_BENCH_CLIENTS", "16,64").split(","))
TOKENS = int(os.environ.get("RELAY_BENCH_TOKENS", "256"))
RATES = tuple(int(r) for r in os.environ.get("RELAY_BENCH_RATES", "1000,2000,4000,8000").split(","))
"""Offered loads, tokens a second over all clients."""
SECONDS = float(os.environ.get("RELAY_BENCH_SECONDS", "8"))
MODEL = "standin"
WORD = "Zq "
"""Every token's text: three characters the role chunk and the disclaimer never contain."""


def chunk(delta: dict[str, str], finish: str | None = None, **extra: object) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    body |= {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    data = f"data: {json.dumps(body)}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


ROLE = chunk({"role": "assistant", "content": ""})
TOKEN = chunk({"content": WORD})
END = (
    chunk({}, "length", usage={"prompt_tokens": 8, "completion_tokens": TOKENS, "total_tokens": TOKENS + 8})
    + b"%x\r\ndata: [DONE]\n\n\r\n" % len(b"data: [DONE]\n\n")
    + b"0\r\n\r\n"
)
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()


class StandIn:
    """An OpenAI-compatible engine that answers every chat request with ``TOKENS`` tokens, one every
    ``interval`` seconds (keep-alive, any number of streams at once)."""

    def __init__(self) -> None:
        self.interval = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        while self.tasks:
            pending = list(self.tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.tasks.difference_update(pending)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if head.startswith(b"GET /v1/models"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(MODELS), MODELS)
                    )
                    continue
                writer.write(STREAM_HEAD + ROLE)
                start = time.perf_counter()
                for i in range(TOKENS):
                    delay = start + i * self.interval - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if writer.transport.is_closing():  # the client (or the lab) hung up
                        return
                    writer.write(TOKEN)
                writer.write(END)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


@dataclass
class Result:
    tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


REQUEST = json.dumps(
    {"model": MODEL, "stream": True, "max_tokens": TOKENS, "messages": [{"role": "user", "content": "Hi"}]}
).encode()


async def client(port: int, start: float, window: tuple[float, float], result: Result) -> None:
    """Closed loop from ``start``: the next answer as soon as the last one ended. Tokens count inside
    ``window`` only; at its end the answer in flight is dropped."""
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(REQUEST), REQUEST)
    )
    word = WORD.encode()
    begin, end = window
    try:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            writer.write(head)
            first, tail = False, b""
            while not tail.endswith(b"\r\n0\r\n\r\n"):
                data = await asyncio.wait_for(reader.read(65536), max(0.01, end - time.perf_counter()))
                if not data:
                    raise SystemExit("a server closed the connection mid-answer")
                # a word cut between two reads counts once: the read's start is joined to the last one's end
                now, seen = time.perf_counter(), (tail[-len(word) + 1 :] + data).count(word)
                if seen and not first:  # every answer's first token counts, those of the ramp too
                    first = True
                    result.ttft.append(now - t0)
                if begin <= now <= end:
                    result.tokens += seen
                tail = (tail + data)[-16:]
    except TimeoutError:
        pass  # the window ended mid-answer
    finally:
        writer.close()


async def measure(port: int, cpu_of: int | None, clients: int, answer_s: float) -> Result:
    """Clients start spread over one answer's time (at most half the window), as users do: all starting
    at once would measure a burst of simultaneous requests at every answer's end. The window opens once
    every client is running."""
    result = Result()
    ramp = min(answer_s, SECONDS / 2)
    t0 = time.perf_counter()
    begin, end = t0 + ramp, t0 + ramp + SECONDS
    cpu = psutil.Process(cpu_of) if cpu_of else None
    tasks = [client(port, t0 + ramp * i / clients, (begin, end), result) for i in range(clients)]
    gathered = asyncio.gather(*tasks)
    await asyncio.sleep(max(0.0, begin - time.perf_counter()))
    cpu0 = sum(cpu.cpu_times()[:2]) if cpu else 0.0
    await gathered
    result.seconds = SECONDS
    result.cpu_s = (sum(cpu.cpu_times()[:2]) - cpu0) if cpu else 0.0
    return result


async def bench(lab_port: int, engine_port: int, lab_pid: int, standin: StandIn) -> None:
    print(f"answers of {TOKENS} tokens, {SECONDS:g} s per measurement")
    print(
        f"{'clients':>7s} {'offered tok/s':>14s} {'direct':>9s} {'via lab':>9s} {'ratio':>6s} "
        f"{'TTFT ms':>8s} {'via lab':>8s} {'lab µs/token':>13s}"
    )
    for clients in CLIENTS:
        for rate in RATES:
            standin.interval = clients / rate
            answer_s = TOKENS * standin.interval
            direct = await measure(engine_port, None, clients, answer_s)
            via = await measure(lab_port, lab_pid, clients, answer_s)
            print(
                f"{clients:7d} {rate:14d} {direct.rate:9.0f} {via.rate:9.0f} {via.rate / direct.rate:5.2f}x "
                f"{statistics.median(direct.ttft) * 1000:8.1f} {statistics.median(via.ttft) * 1000:8.1f} "
                f"{via.cpu_s * 1e6 / max(via.tokens, 1):13.0f}",
                flush=True,
            )


async def main() -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("relay_bench needs two cores: one for the lab, one for the engine and the clients")
    lab_core, rest = {cores[-1]}, set(cores[:-1])
    os.sched_setaffinity(0, rest)
    standin = StandIn()
    server = await asyncio.start_server(standin.handle, "127.0.0.1", 0)
    engine_port = server.sockets[0].getsockname()[1]
    from medvlab.vlm.tiny import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="medvlab-relay-bench-") as tmp:
        model = build_tiny_model(
            Path(tmp) / "model"
        )  # the lab reads its tokenizer; the engine is the stand-in
        lab_port = free_port()
        lab = await asyncio.to_thread(
            serve,
            model,
            lab_port,
            Path(tmp) / "lab",
            "--engine",
            "openai",
            "--engine-url",
            f"http://127.0.0.1:{engine_port}/v1",
            "--engine-model",
            MODEL,
            cpus=lab_core,
        )
        try:
            standin.interval = 0.001
            await measure(lab_port, None, 16, 0.0)  # warm-up
            print(
                f"lab on core {sorted(lab_core)}, stand-in engine and clients on {sorted(rest)}",
                file=sys.stderr,
            )
            await bench(lab_port, engine_port, lab.pid, standin)
        finally:
            server.close()
            await standin.stop()  # first: the lab's open answers end, so it can shut down
            lab.terminate()
            await asyncio.to_thread(lab.wait, 30)


if __name__ == "__main__":
    asyncio.run(main())
