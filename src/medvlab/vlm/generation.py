"""Generation primitives shared by the engine and the batcher: stream statistics, the thinking filter,
the incremental decoder, the token-id queue, stop rules, and the context-window check.

Kept apart from :mod:`medvlab.vlm.engine` so the engine and :mod:`medvlab.vlm.batching` both import
them and neither imports the other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from medvlab.errors import PromptTooLongError

THINK_START = "<unused94>"
THINK_END = "<unused95>"
TEMPLATE_TOKENS = 64
"""Tokens the chat template adds around the messages (role markers, image delimiters), an upper bound."""


@dataclass
class StreamStats:
    """Filled in while an answer streams: token counts and why generation stopped."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    seconds: float = 0.0
    batch_size: int = 1


class ThinkingFilter:
    """Drops token ids from a thinking-start id up to and including the matching end id."""

    def __init__(self, start_id: int | None, end_id: int | None) -> None:
        self.start_id, self.end_id = start_id, end_id
        self.inside = False

    def feed(self, ids: Sequence[int]) -> list[int]:
        kept: list[int] = []
        for i in ids:
            if self.start_id is not None and i == self.start_id:
                self.inside = True
            elif self.inside:
                if i == self.end_id:
                    self.inside = False
            else:
                kept.append(i)
        return kept


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas.

    Decodes the whole kept sequence each step and emits the new suffix, holding back text that ends
    in U+FFFD (a multi-byte character whose byte-fallback tokens have not all arrived yet).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, ids: Sequence[int]) -> str:
        self.ids.extend(ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        return self._delta(text)

    def flush(self) -> str:
        return self._delta(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _delta(self, text: str) -> str:
        if not text.startswith(self.emitted):  # decoders may re-normalise earlier text; resync
            n = 0
            while n < min(len(text), len(self.emitted)) and text[n] == self.emitted[n]:
                n += 1
            self.emitted = self.emitted[:n]
        delta = text[len(self.emitted) :]
        self.emitted = text
        return delta


class _IdQueue:
    """A ``generate()`` streamer that hands new token ids to the consuming thread (skips the prompt)."""

    _END = object()

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        self.seen_prompt = False

    def put(self, value: Any) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.q.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.q.put(self._END)

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            item = self.q.get()
            if item is self._END:
                return
            yield item


class StopWhen:
    """A stopping criterion from a zero-argument predicate (cancel, or every batched request done)."""

    def __init__(self, predicate: Any) -> None:
        self.predicate = predicate

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full(
            (input_ids.shape[0],), bool(self.predicate()), dtype=torch.bool, device=input_ids.device
        )


class StopEvent(threading.Event):
    """One generation's stop flag, also set while its caller's ``cancel`` is set.

    Setting it stops this generation only: a caller may pass the same ``cancel`` (client gone, timeout)
    to several generations in a row (a report answers, then fills the structured table) and the end of the
    first must not stop the next.
    """

    def __init__(self, parent: threading.Event | None = None) -> None:
        super().__init__()
        self.parent = parent

    def is_set(self) -> bool:
        return super().is_set() or (self.parent is not None and self.parent.is_set())


class ContextWindow:
    """The model's context limit, checked before a prompt is tokenised in full.

    A prompt longer than ``limit * max_chars_per_token`` characters cannot fit whatever its tokens, so it
    is refused without tokenising; otherwise its text is tokenised (cheap next to the model) and image
    tokens are added at ``tokens_per_image`` each.
    """

    def __init__(self, tokenizer: Any, limit: int, tokens_per_image: int, model_id: str) -> None:
        self.tokenizer, self.limit, self.model_id = tokenizer, limit, model_id
        self.tokens_per_image = tokens_per_image
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.max_chars_per_token = max(8, *(len(str(t)) for t in vocab if t is not None))

    def _refuse(self, what: str) -> PromptTooLongError:
        return PromptTooLongError(
            f"The prompt is {what}, more than the {self.limit} tokens '{self.model_id}' can read "
            "(its max_position_embeddings).",
            "Shorten the question or the conversation, send fewer slices (max_slices), "
            "or use a model with a longer context.",
        )

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        """An upper estimate of the prompt's tokens; PromptTooLongError when it cannot fit."""
        texts = [
            str(part.get("text", ""))
            for m in messages
            for part in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
            if part.get("type", "text") == "text"
        ]
        images = sum(
            1
            for m in messages
            if isinstance(m["content"], list)
            for part in m["content"]
            if part.get("type") == "image"
        )
        chars = sum(len(t) for t in texts)
        if chars > self.limit * self.max_chars_per_token:
            raise self._refuse(f"{chars} characters long")
        text_tokens = sum(len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        total = text_tokens + images * self.tokens_per_image + TEMPLATE_TOKENS
        if total >= self.limit:
            raise self._refuse(f"about {total} tokens ({images} image(s) included)")
        return total

    def check_exact(self, prompt_tokens: int) -> None:
        if prompt_tokens >= self.limit:
            raise self._refuse(f"{prompt_tokens} tokens")

    def room(self, prompt_tokens: int) -> int:
        """How many new tokens still fit after ``prompt_tokens``."""
        return max(1, self.limit - prompt_tokens)
