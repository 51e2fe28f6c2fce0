"""Dynamic batching: concurrent greedy requests share one generate() and get the answers they would alone."""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from medvlab.config import GenerationOptions
from medvlab.devices import resolve_device
from medvlab.vlm.engine import StreamStats, TransformersBackend


def conversation(i: int) -> list[dict]:
    content: list[dict] = [
        {"type": "image", "image": Image.new("RGB", (40 + 8 * i, 64), (30 * i, 90, 200))}
        for _ in range(1 + i % 2)
    ]  # one or two pictures
    content.append({"type": "text", "text": f"Question number {i}: " + "describe the image. " * (i % 3)})
    return [{"role": "user", "content": content}]


def test_concurrent_requests_are_batched_with_unchanged_answers(tiny_dir: Path) -> None:
    device = resolve_device("cpu")
    batched = TransformersBackend(str(tiny_dir), device, max_batch_size=8)
    alone = TransformersBackend(str(tiny_dir), device, max_batch_size=1)
    options = [GenerationOptions(max_new_tokens=6 + i, min_new_tokens=0) for i in range(5)]
    expected = ["".join(alone.stream(conversation(i), options[i])) for i in range(5)]

    results: list[str | None] = [None] * 5
    stats = [StreamStats() for _ in range(5)]
    gate = threading.Barrier(5)

    def run(i: int) -> None:
        gate.wait()
        results[i] = "".join(batched.stream(conversation(i), options[i], stats[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert (
        max(s.batch_size for s in stats) > 1 and batched.batcher is not None and batched.batcher.largest > 1
    )
    assert results == expected  # left padding changes nothing for greedy decoding
    assert all(s.completion_tokens <= options[i].max_new_tokens for i, s in enumerate(stats))


def test_sampling_and_structured_requests_run_alone(tiny_dir: Path) -> None:
    from medvlab.vlm.batching import Batcher

    assert Batcher.accepts(GenerationOptions())
    assert not Batcher.accepts(GenerationOptions(do_sample=True))
    assert not Batcher.accepts(GenerationOptions(json_schema={"type": "object"}))
    assert not Batcher.accepts(GenerationOptions(seed=3))
