"""The VLM engine: load any Hugging Face image-text-to-text model and stream answers from it.

``TransformersBackend`` runs the model in-process (AutoProcessor + AutoModelForImageTextToText), the
same code for ``google/medgemma-4b-it``, a local folder, or the offline tiny model. Generation runs in
a worker thread and tokens are streamed back; MedGemma's thinking span (``<unused94>…<unused95>``) is
dropped at the token level, so neither its text nor its markers reach the user.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from medvlab.config import GenerationOptions
from medvlab.devices import DeviceInfo, resolve_device
from medvlab.errors import GenerationError, ModelNotFoundError
from medvlab.vlm.backend import Backend, Capabilities
from medvlab.vlm.batching import Batcher
from medvlab.vlm.generation import (
    THINK_END,
    THINK_START,
    ContextWindow,
    IncrementalDecoder,
    StopEvent,
    StopWhen,
    StreamStats,
    ThinkingFilter,
    _IdQueue,
)
from medvlab.vlm.loading import _classify_load_error, resolve_model_source
from medvlab.vlm.lora import PeftAdapters

logger = logging.getLogger(__name__)

__all__ = [
    "THINK_END",
    "THINK_START",
    "Backend",
    "Capabilities",
    "StreamStats",
    "TransformersBackend",
    "_classify_load_error",
    "load_backend",
    "resolve_model_source",
]


class TransformersBackend:
    """An image-text-to-text model running in this process through transformers."""

    engine = "transformers"

    def __init__(
        self,
        model: str,
        device: DeviceInfo | None = None,
        adapter: str | None = None,
        cache_dir: Path | None = None,
        trust_remote_code: bool = False,
        max_batch_size: int = 8,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_id = model
        self.adapter = adapter
        self.device = device or resolve_device()
        self.source = resolve_model_source(model, cache_dir)
        self._lock = threading.Lock()
        self._running = 0
        self._running_lock = threading.Lock()
        self.model: Any = None
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        try:
            self.processor = AutoProcessor.from_pretrained(self.source, **kwargs)
            dtype = getattr(torch, self.device.dtype)
            try:
                self.model = AutoModelForImageTextToText.from_pretrained(
                    self.source, dtype=dtype, attn_implementation=self.device.attn_implementation, **kwargs
                )
            except (ValueError, ImportError) as exc:
                if self.device.attn_implementation == "eager" or "attn" not in str(exc).lower():
                    raise
                logger.warning(
                    "%s does not support %s attention; using eager", model, self.device.attn_implementation
                )
                self.model = AutoModelForImageTextToText.from_pretrained(
                    self.source, dtype=dtype, attn_implementation="eager", **kwargs
                )
        except Exception as exc:
            raise _classify_load_error(model, exc) from exc
        self.loras = PeftAdapters()
        if adapter:
            if not Path(adapter).exists():
                raise ModelNotFoundError(
                    f"The adapter folder '{adapter}' does not exist.", "Check the --adapter path."
                )
            self.model = self.loras.set_default(self.model, adapter)
        self.adapter = adapter
        self.model.to(self.device.torch_device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.think_ids = (self._token_id(THINK_START), self._token_id(THINK_END))
        self._grammars: Any = None
        text_config = self.model.config.get_text_config()
        self.context = ContextWindow(
            self.tokenizer,
            int(getattr(text_config, "max_position_embeddings", 0) or 2**20),
            int(
                getattr(self.processor, "image_seq_length", 0)
                or getattr(self.model.config, "mm_tokens_per_image", 0)
                or 256
            ),
            model,
        )
        self.batcher: Batcher | None = Batcher(self, max_batch_size) if max_batch_size > 1 else None
        self.capabilities = Capabilities(
            batching=self.batcher is not None, structured_output=True, attention_maps=True, adapters=True
        )
        logger.info(
            "loaded %s on %s (%s, %s attention) in %.1fs",
            model,
            self.device.torch_device,
            self.device.dtype,
            self.device.attn_implementation,
            time.perf_counter() - started,
        )

    def _token_id(self, token: str) -> int | None:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        return None if tid is None or tid == self.tokenizer.unk_token_id else int(tid)

    @property
    def generating(self) -> int:
        """Generations running (or waiting for the model) in worker threads right now."""
        with self._running_lock:
            return self._running

    def check(self) -> None:
        """Loaded in this process: nothing can be down."""

    def load_stats(self) -> dict[str, int]:
        return {
            "generating": self.generating,
            "batches": self.batcher.batches if self.batcher else 0,
            "largest_batch": self.batcher.largest if self.batcher else 0,
        }

    def attention_grids(
        self, messages: list[dict[str, Any]], answer: str, span: tuple[int, int] | None = None
    ) -> list[Any]:
        from medvlab.vlm.explain import attention_grids

        return attention_grids(self, messages, answer, span)

    def set_adapter(self, path: str | None) -> None:
        """Hot-swap: load (once) and activate the adapter at ``path``, or deactivate adapters (``None``)."""
        if path is not None and not Path(path).exists():
            raise ModelNotFoundError(f"The adapter folder '{path}' does not exist.", "Check the path.")
        with self._lock:  # no generation runs while the weights change
            self.model = self.loras.set_default(self.model, path)
            self.adapter = path
        logger.info("adapter %s active", path or "none (base model)")

    @property
    def adapters(self) -> dict[str, str]:
        """Named adapters served at once (name -> folder); a request picks one by ``model`` name."""
        return dict(self.loras.named)

    def load_adapter(self, name: str, path: str) -> None:
        """Load the adapter at ``path`` under ``name`` beside the others (the active one is unchanged)."""
        with self._lock:
            self.model = self.loras.load(self.model, name, path)
        logger.info("adapter %s loaded as '%s'", path, name)

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            self.loras.path_of(name)
            self.model = self.loras.unload(self.model, name)
        logger.info("adapter '%s' unloaded", name)

    def grammars(self) -> Any:
        """The xgrammar compiler for this model's tokenizer (built on first structured request)."""
        if self._grammars is None:
            from medvlab.vlm.structured import GrammarCache

            eos = self.model.generation_config.eos_token_id
            stop_ids = [int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None]
            vocab = int(self.model.config.get_text_config().vocab_size)
            self._grammars = GrammarCache(self.tokenizer, vocab, stop_ids)
        return self._grammars

    def prepare_batch(self, conversations: list[list[dict[str, Any]]]) -> Any:
        """Several conversations -> one left-padded batch on the device."""
        inputs = self.processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"},
        )
        inputs = inputs.to(self.device.torch_device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def prepare(self, messages: list[dict[str, Any]]) -> Any:
        """Chat messages -> model inputs on the device (pixel values in the model's dtype)."""
        inputs = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        inputs = inputs.to(self.device.torch_device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def stream(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        stats: StreamStats | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text in pieces. A prompt that cannot fit the context window is refused
        here, before the first piece is asked for (so a streaming face can still answer 400)."""
        room = self.context.room(self.context.prompt_tokens(messages))
        if options.max_new_tokens > room:  # keep the answer inside the context window
            options = replace(options, max_new_tokens=room, min_new_tokens=min(options.min_new_tokens, room))
        if options.json_schema is not None:  # a schema the grammar compiler refuses is the client's error
            self.grammars().logits_processor(options.json_schema)
        return self._stream(messages, options, stats if stats is not None else StreamStats(), cancel)

    def _stream(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        stats: StreamStats,
        cancel: threading.Event | None,
    ) -> Iterator[str]:
        stop = StopEvent(cancel)  # ends this generation, never the caller's event
        if self.batcher is not None and self.batcher.accepts(options):
            source = self.batcher.submit(messages, options, stats, stop)
        else:
            source = self._generate_alone(messages, options, stats, stop)
        started = time.perf_counter()
        thinking = ThinkingFilter(*self.think_ids)
        decoder = IncrementalDecoder(self.tokenizer)
        try:
            for ids in source:
                stats.completion_tokens += len(ids)
                delta = decoder.push(thinking.feed(ids))
                if delta:
                    yield delta
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            stop.set()  # a consumer that stops early (client gone) stops generation
            source.close()
            stats.seconds = time.perf_counter() - started

    def generation_kwargs(self, options: GenerationOptions) -> dict[str, Any]:
        """``generate()`` arguments for ``options`` (shared by single and batched generation)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": options.max_new_tokens,
            "min_new_tokens": min(options.min_new_tokens, options.max_new_tokens) or None,
            "do_sample": options.do_sample,
        }
        if options.json_schema is not None:
            from medvlab.vlm.structured import token_budget

            kwargs["logits_processor"] = [self.grammars().logits_processor(options.json_schema)]
            # The grammar sees special tokens (<unused94>, <start_of_image>, ...) as plain text it may put
            # inside a JSON string; they are dropped when decoding, which would cut the JSON. Forbid them.
            stops = set(self.grammars().stop_ids)
            kwargs["suppress_tokens"] = [i for i in self.tokenizer.all_special_ids if i not in stops]
            kwargs["max_new_tokens"] = max(options.max_new_tokens, token_budget(options.json_schema))
        if options.do_sample:
            kwargs.update(temperature=options.temperature, top_p=options.top_p)
        else:  # greedy: clear sampling knobs a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def run_generate(self, adapter: str | None = None, **kwargs: Any) -> None:
        """``model.generate`` under the model lock with the named ``adapter`` (None: the active one),
        counted in ``generating``."""
        import torch

        with self._running_lock:
            self._running += 1
        try:
            with self._lock, torch.inference_mode(), self.loras.using(self.model, adapter):
                self.model.generate(**kwargs)
        finally:
            with self._running_lock:
                self._running -= 1

    def _generate_alone(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        stats: StreamStats,
        stop: threading.Event,
    ) -> Generator[list[int], None, None]:
        """One request, one ``generate()`` in a worker thread; yields new token ids."""
        import torch
        from transformers import StoppingCriteriaList

        inputs = self.prepare(messages)
        stats.prompt_tokens = int(inputs["input_ids"].shape[-1])
        self.context.check_exact(stats.prompt_tokens)
        streamer = _IdQueue()
        kwargs = {
            **inputs,
            **self.generation_kwargs(options),
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([StopWhen(stop.is_set)]),
        }
        errors: list[BaseException] = []

        def work() -> None:
            try:
                if options.seed is not None:
                    torch.manual_seed(options.seed)
                self.run_generate(adapter=options.adapter, **kwargs)
            except BaseException as exc:
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=work, name="medvlab-generate", daemon=True)
        worker.start()
        produced = 0
        try:
            for ids in streamer:
                produced += len(ids)
                yield ids
        finally:
            stop.set()
            worker.join()
        if errors:
            raise GenerationError(
                f"Generation failed: {type(errors[0]).__name__}: {errors[0]}",
                "Retry; if it fails again see the server log (the model itself is loaded).",
            ) from errors[0]
        stats.finish_reason = "length" if produced >= kwargs["max_new_tokens"] else "stop"


def load_backend(
    model: str,
    device: str | None = None,
    dtype: str | None = None,
    adapter: str | None = None,
    cache_dir: Path | None = None,
    max_batch_size: int = 8,
) -> TransformersBackend:
    """Resolve the device and load ``model`` (hub id, folder or ``tiny``)."""
    return TransformersBackend(
        model,
        resolve_device(device, dtype),
        adapter=adapter,
        cache_dir=cache_dir,
        max_batch_size=max_batch_size,
    )
