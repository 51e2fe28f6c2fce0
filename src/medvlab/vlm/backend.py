"""The one backend contract every engine implements, with capability flags services check."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from medvlab.config import GenerationOptions
from medvlab.vlm.generation import StreamStats


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; services check these and name the engine that can when one cannot."""

    streaming: bool = True
    """Answers arrive token by token."""
    batching: bool = False
    """Concurrent requests share forward passes."""
    structured_output: bool = False
    """Decoding constrained to a JSON schema."""
    attention_maps: bool = False
    """Attention of the answer over the image (needs the weights in this process)."""
    adapters: bool = False
    """LoRA adapters swapped at run time."""


class Backend(Protocol):
    """The one contract every engine implements (in-process transformers today; remote engines next)."""

    model_id: str
    engine: str
    """Short name of the engine, used in messages (``transformers``, ``openai``, ``vllm``...)."""
    capabilities: Capabilities
    adapter: str | None

    def stream(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        stats: StreamStats | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text in pieces as it is generated (prompt checks happen before the first)."""
        ...

    def set_adapter(self, path: str | None) -> None:
        """Activate the adapter at ``path`` (``None``: the base model); needs ``capabilities.adapters``."""
        ...

    @property
    def adapters(self) -> dict[str, str]:
        """Named adapters served at once (name -> folder); a request picks one by ``model`` name."""
        ...

    def load_adapter(self, name: str, path: str) -> None:
        """Serve the adapter at ``path`` under ``name`` beside the others; needs ``capabilities.adapters``."""
        ...

    def unload_adapter(self, name: str) -> None:
        """Stop serving the adapter named ``name``."""
        ...

    def attention_grids(
        self, messages: list[dict[str, Any]], answer: str, span: tuple[int, int] | None = None
    ) -> list[Any]:
        """Per-picture attention of ``answer`` (needs ``capabilities.attention_maps``)."""
        ...

    def load_stats(self) -> dict[str, int]:
        """Generations running now, batches run and the largest batch so far."""
        ...

    def check(self) -> None:
        """Raise the error (with its fix) that requests would meet, e.g. a remote engine that is down."""
        ...
