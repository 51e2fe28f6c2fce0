"""A remote engine: any OpenAI-compatible server (vLLM, SGLang, LMDeploy, a hosted endpoint, another medvlab).

The lab keeps all imaging to itself: messages carry only the rendered pictures (PNG data URIs) and text,
never DICOM headers. Answers are always streamed from the engine (``stream_options.include_usage`` gives the
token counts); a caller that stops reading, or whose cancel event is set, closes the connection, which is how
OpenAI-compatible servers learn to stop generating. Structured answers use ``response_format`` json_schema
and are validated again by the lab. MedGemma's thinking span is removed from the text if the engine passes it
through. Engine errors become the lab's own errors with the fix.

Written over plain HTTP clients rather than the ``openai`` client: the lab needs the raw stream ended from
another thread on cancel, per-phase timeouts and the engine's error bodies. The answer streams are read over
urllib3 (:mod:`medvlab.vlm.event_stream`: every relayed token passes there), the control calls over httpx.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import urllib3

from medvlab.config import GenerationOptions
from medvlab.errors import (
    CapabilityError,
    EngineTimeoutError,
    EngineUnavailableError,
    GenerationError,
    ModelNotFoundError,
    PromptTooLongError,
    RequestError,
)
from medvlab.vlm.backend import Capabilities
from medvlab.vlm.event_stream import STOPPER, EventStreams, data_lines
from medvlab.vlm.generation import THINK_END, THINK_START, StopEvent, StreamStats
from medvlab.vlm.lora import EngineAdapters, check_name
from medvlab.vlm.prompting import DISCLAIMERS, strip_disclaimer

logger = logging.getLogger(__name__)


def png_data_uri(picture: Any) -> str:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def to_openai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hugging Face chat messages (PIL images and text parts) -> OpenAI messages (pixels as PNG data URIs)."""
    out = []
    for m in messages:
        parts = []
        content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for part in content:
            if part.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": png_data_uri(part["image"])}})
            else:
                parts.append({"type": "text", "text": str(part.get("text", ""))})
        out.append({"role": m["role"], "content": parts})
    return out


class ThinkingText:
    """Removes ``<unused94>…<unused95>`` spans from streamed text, across chunk boundaries."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""

    def feed(self, text: str) -> str:
        text = self.pending + text
        self.pending = ""
        out = []
        while text:
            marker = THINK_END if self.inside else THINK_START
            i = text.find(marker)
            if i < 0:
                # hold back a tail that could be the start of a marker split across chunks
                keep = next((k for k in range(len(marker) - 1, 0, -1) if text.endswith(marker[:k])), 0)
                if not self.inside:
                    out.append(text[: len(text) - keep])
                self.pending = text[len(text) - keep :] if keep else ""
                break
            if not self.inside:
                out.append(text[:i])
            text = text[i + len(marker) :]
            self.inside = not self.inside
        return "".join(out)

    def flush(self) -> str:
        tail, self.pending = ("" if self.inside else self.pending), ""
        return tail


class DisclaimerTail:
    """Removes a disclaimer the engine already added (another medvlab does; the lab adds its own in the
    user's language) without delaying the stream: only text that could be the start of one
    (``"\n\n⚠️ …"``) is held back until it is known whether it is."""

    def __init__(self) -> None:
        self.markers = ["\n\n" + d for d in DISCLAIMERS.values()]
        self.buffer = ""

    def _hold_from(self) -> int:
        """Where the part that may be (the start of) a disclaimer begins, or len(buffer)."""
        start = self.buffer.find("\n")
        while start >= 0:
            rest = self.buffer[start:]
            if any(m.startswith(rest) or rest.startswith(m) for m in self.markers):
                return start
            start = self.buffer.find("\n", start + 1)
        return len(self.buffer)

    def feed(self, text: str) -> str:
        self.buffer += text
        i = self._hold_from()
        out, self.buffer = self.buffer[:i], self.buffer[i:]
        return out

    def flush(self) -> str:
        tail, self.buffer = strip_disclaimer(self.buffer), ""
        return tail


class OpenAIBackend:
    """The ``Backend`` contract over an OpenAI-compatible ``/v1/chat/completions``."""

    engine = "openai"
    capabilities = Capabilities(
        streaming=True, batching=True, structured_output=True, attention_maps=False, adapters=True
    )

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
        flavor: str = "auto",
        served_adapters: dict[str, str] | None = None,
    ) -> None:
        """``flavor``: the engine's run-time adapter API (``vllm``, ``sglang``, ``medvlab`` or ``auto``);
        ``served_adapters``: adapters the engine already serves by name (started with them)."""
        self.url = url.rstrip("/")
        self.model_id = model
        self.adapter: str | None = None
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not key:
            raise RequestError(
                f"The engine's API key variable {api_key_env} is empty.",
                f"export {api_key_env}=<key>, or leave --engine-key-env out for an engine without keys.",
            )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)
        self.streams = EventStreams(self.url, headers, connect_timeout_s, read_timeout_s)
        self._running = 0
        self._lock = threading.Lock()
        self.loras = EngineAdapters(self.client, self.url, flavor)
        self.loras.named.update(served_adapters or {})
        self._default: str | None = None

    # -- what the contract asks ------------------------------------------------------------------------
    def load_stats(self) -> dict[str, int]:
        with self._lock:
            return {"generating": self._running, "batches": 0, "largest_batch": 0}

    def set_adapter(self, path: str | None) -> None:
        """Answer with the adapter at ``path`` when a request names none (loaded on the engine once)."""
        if path is None:
            self._default, self.adapter = None, None
            return
        name = next((n for n, p in self.loras.named.items() if p == path), None)
        if name is None:
            name = check_name(re.sub(r"[^A-Za-z0-9_.-]", "-", Path(path).name)[:64] or "adapter")
            self.loras.load(name, path)
        self._default, self.adapter = name, path

    @property
    def adapters(self) -> dict[str, str]:
        return dict(self.loras.named)

    def load_adapter(self, name: str, path: str) -> None:
        self.loras.load(name, path)

    def unload_adapter(self, name: str) -> None:
        if name == self._default:
            self._default, self.adapter = None, None
        self.loras.unload(name)

    def attention_grids(
        self, messages: list[dict[str, Any]], answer: str, span: tuple[int, int] | None = None
    ) -> list[Any]:
        raise CapabilityError(
            f"Attention maps need the model's weights in this process; the engine at {self.url} is remote.",
            "Serve the model in-process (the transformers engine, medvlab's default) to explain answers.",
        )

    def check(self) -> None:
        """Fail now, with the fix, when the engine is down or does not serve ``model_id``."""
        try:
            r = self.client.get("/models")
        except httpx.HTTPError as exc:
            raise self._down(exc) from exc
        if r.status_code == 200:
            names = [m.get("id") for m in r.json().get("data", []) if isinstance(m, dict)]
            if names and self.model_id not in names:
                raise RequestError(
                    f"The engine at {self.url} serves {', '.join(map(str, names))}, not '{self.model_id}'.",
                    f"Pass --engine-model with one of: {', '.join(map(str, names))}.",
                )

    # -- generation -----------------------------------------------------------------------------------
    def body(self, messages: list[dict[str, Any]], options: GenerationOptions) -> dict[str, Any]:
        if options.adapter is not None and options.adapter not in self.loras.named:
            raise ModelNotFoundError(
                f"No adapter named '{options.adapter}' is loaded on the engine.",
                f"Loaded: {', '.join(self.loras.named) or 'none'} (POST /v1/adapters loads one).",
            )
        body: dict[str, Any] = {
            "model": options.adapter or self._default or self.model_id,
            "messages": to_openai(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature if options.do_sample else 0.0,
        }
        if options.do_sample:
            body["top_p"] = options.top_p
        if options.seed is not None:
            body["seed"] = options.seed
        if options.min_new_tokens:
            body["min_tokens"] = options.min_new_tokens  # vLLM's (and medvlab's) extension
        if options.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": options.json_schema, "strict": True},
            }
        return body

    def stream(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        stats: StreamStats | None = None,
        cancel: Any = None,
    ) -> Iterator[str]:
        """Open the stream now (so connection and request errors surface before the first piece), then
        yield the answer's text."""
        stats = stats if stats is not None else StreamStats()
        stop = StopEvent(cancel)
        try:
            response = self.streams.post("/chat/completions", self.body(messages, options))
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of the connect timeout
            raise self._down(exc) from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise self._slow(exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._down(exc) from exc
        if response.status != 200:
            content = response.read()
            response.close()
            raise self._refused(
                httpx.Response(response.status, headers=dict(response.headers), content=content)
            )
        return self._pieces(response, stats, stop)

    def _pieces(
        self, response: urllib3.BaseHTTPResponse, stats: StreamStats, stop: StopEvent
    ) -> Iterator[str]:
        with self._lock:
            self._running += 1
        forget = STOPPER.watch(stop, response)  # closing the connection is how the engine stops generating
        started = time.perf_counter()
        thinking = ThinkingText()
        tail = DisclaimerTail()
        finished = False
        try:
            for line in data_lines(response):
                if line == "[DONE]" or not line:
                    continue
                chunk = json.loads(line)
                if "error" in chunk:
                    raise GenerationError(
                        f"The engine at {self.url} failed mid-answer: {chunk['error'].get('message')}",
                        "Retry; see the engine's log if it recurs.",
                    )
                if chunk.get("usage"):
                    stats.prompt_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                    stats.completion_tokens = int(chunk["usage"].get("completion_tokens") or 0)
                for choice in chunk.get("choices") or []:
                    if choice.get("finish_reason"):
                        stats.finish_reason = str(choice["finish_reason"])
                    text = tail.feed(thinking.feed((choice.get("delta") or {}).get("content") or ""))
                    if text:
                        yield text
            finished = not stop.is_set()
            rest = tail.feed(thinking.flush()) + tail.flush()
            if rest:
                yield rest
        except urllib3.exceptions.TimeoutError as exc:
            raise self._slow(exc) from exc
        except (urllib3.exceptions.HTTPError, OSError, json.JSONDecodeError) as exc:
            if not stop.is_set():  # a cancelled stream ends quietly
                raise GenerationError(
                    f"The stream from the engine at {self.url} broke: {exc}", "Retry; see the engine's log."
                ) from exc
        finally:
            forget()
            stop.set()
            if finished:
                response.release_conn()  # read to the end: the connection serves the next answer
            else:
                response.close()  # closes the connection, which stops the engine's generation
            stats.seconds = time.perf_counter() - started
            with self._lock:
                self._running -= 1

    # -- the engine's failures as the lab's errors ------------------------------------------------------
    def _down(self, exc: Exception) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"The engine at {self.url} cannot be reached ({type(exc).__name__}).",
            f"Start the engine at {self.url} (e.g. `vllm serve MODEL` or `medvlab serve --port ...`), "
            "or serve in-process without --engine.",
        )

    def _slow(self, exc: Exception) -> EngineTimeoutError:
        return EngineTimeoutError(
            f"The engine at {self.url} did not answer within {self.timeout.read:g} s.",
            "Check the engine's load, or raise MEDVLAB_ENGINE_TIMEOUT_S.",
        )

    def _refused(self, response: httpx.Response) -> Exception:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        message, _, remote_fix = message.partition(" Fix: ")  # another medvlab says its own fix
        problem = f"The engine at {self.url} answered {response.status_code}: {message}"
        if response.status_code in (401, 403):
            return EngineUnavailableError(
                problem, "Put the engine's key in the variable --engine-key-env names."
            )
        if response.status_code == 404:
            return RequestError(
                problem, remote_fix or "Check --engine-model against the engine's GET /v1/models."
            )
        if response.status_code in (400, 413, 422):
            code = ""
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                code = str(response.json()["error"].get("code") or "")
            lowered = message.lower()
            too_long = code == "PromptTooLongError" or "context length" in lowered or "too long" in lowered
            kind = PromptTooLongError if too_long else RequestError
            return kind(problem, remote_fix or "Change the request as it says.")
        if response.status_code in (429, 503):
            return EngineUnavailableError(problem, "The engine is busy or loading; retry shortly.")
        return GenerationError(problem, "See the engine's log.")
