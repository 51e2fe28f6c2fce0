"""The transformers backend on the offline tiny Gemma 3 model: loading, streaming, thinking, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from medvlab.config import GenerationOptions
from medvlab.devices import resolve_device
from medvlab.errors import GatedModelError, ModelNotFoundError
from medvlab.vlm.engine import (
    THINK_END,
    THINK_START,
    IncrementalDecoder,
    StreamStats,
    ThinkingFilter,
    TransformersBackend,
    _classify_load_error,
    resolve_model_source,
)


@pytest.fixture(scope="module")
def backend(tiny_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_dir), resolve_device("cpu"))


def messages(text: str = "Describe the image.") -> list[dict]:
    img = Image.new("RGB", (100, 80), (120, 30, 200))
    return [
        {"role": "system", "content": [{"type": "text", "text": "You are an expert radiologist."}]},
        {"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": text}]},
    ]


def test_tiny_model_loads_through_auto_classes(backend: TransformersBackend, tiny_dir: Path) -> None:
    assert type(backend.model).__name__ == "Gemma3ForConditionalGeneration"
    assert type(backend.processor).__name__ == "Gemma3Processor"
    assert backend.think_ids[0] is not None and backend.think_ids[1] is not None
    assert (tiny_dir / "config.json").exists() and (tiny_dir / "tokenizer.json").exists()


def test_prompt_holds_image_tokens(backend: TransformersBackend) -> None:
    inputs = backend.prepare(messages())
    image_id = backend.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    assert int((inputs["input_ids"] == image_id).sum()) == 16  # one image, 4x4 soft tokens
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 64, 64)


def test_greedy_stream_is_deterministic_and_bounded(backend: TransformersBackend) -> None:
    opts = GenerationOptions(max_new_tokens=12)
    s1, s2 = StreamStats(), StreamStats()
    a = list(backend.stream(messages(), opts, s1))
    b = list(backend.stream(messages(), opts, s2))
    assert "".join(a) == "".join(b) and "".join(a)
    assert 1 <= s1.completion_tokens <= 12 and s1.prompt_tokens > 16
    assert s1.finish_reason in ("stop", "length")


def test_sampling_with_seed_is_reproducible(backend: TransformersBackend) -> None:
    opts = GenerationOptions(max_new_tokens=10, do_sample=True, temperature=1.5, seed=7)
    assert "".join(backend.stream(messages(), opts)) == "".join(backend.stream(messages(), opts))


def test_cancel_stops_generation(backend: TransformersBackend) -> None:
    cancel = threading.Event()
    cancel.set()
    stats = StreamStats()
    list(backend.stream(messages(), GenerationOptions(max_new_tokens=50), stats, cancel))
    assert stats.completion_tokens <= 1  # batched: dropped before it starts; alone: stopped after one step


def test_thinking_span_is_removed(backend: TransformersBackend) -> None:
    tok = backend.tokenizer
    answer_ids = tok("The liver is normal. 肝脏正常。", add_special_tokens=False)["input_ids"]
    thought_ids = tok("secret reasoning", add_special_tokens=False)["input_ids"]
    start, end = tok.convert_tokens_to_ids(THINK_START), tok.convert_tokens_to_ids(THINK_END)
    stream = [start, *thought_ids, end, *answer_ids]
    filt, dec = ThinkingFilter(start, end), IncrementalDecoder(tok)
    pieces = [dec.push(filt.feed([i])) for i in stream] + [dec.flush()]
    text = "".join(pieces)
    assert text == "The liver is normal. 肝脏正常。"
    assert all("\ufffd" not in p for p in pieces)  # multi-byte characters are never split


def test_missing_model_errors_say_how_to_get_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_source(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model_source(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="hf download google/medgemma-4b-it"):
        TransformersBackend("google/medgemma-4b-it", resolve_device("cpu"))


def test_gated_error_is_recognised() -> None:
    import httpx
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/google/medgemma-4b-it/resolve/main/config.json"
    response = httpx.Response(401, request=httpx.Request("GET", url))  # built locally, nothing is sent
    try:
        raise OSError("You are trying to access a gated repo.") from GatedRepoError(
            "401 gated", response=response
        )
    except OSError as exc:
        err = _classify_load_error("google/medgemma-4b-it", exc)
    assert isinstance(err, GatedModelError)
    assert "https://huggingface.co/google/medgemma-4b-it" in str(err) and "hf auth login" in str(err)


def test_min_new_tokens_holds_back_the_end(backend: TransformersBackend) -> None:
    stats = StreamStats()
    list(backend.stream(messages(), GenerationOptions(max_new_tokens=30, min_new_tokens=30), stats))
    assert stats.completion_tokens == 30 and stats.finish_reason == "length"


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback, nothing listens: no outside traffic
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="cannot be reached.*--model tiny"):
        resolve_model_source("google/medgemma-4b-it")
    assert time.monotonic() - started < 10
