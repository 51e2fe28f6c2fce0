"""Dynamic batching: concurrent greedy requests share one ``generate()`` call.

Requests arriving within a short window with the same decoding settings (greedy, same ``min_new_tokens``,
same LoRA adapter: one is active per ``generate()``) are left-padded into one batch. A dispatcher
streamer splits each step's tokens by row and feeds every request its own queue; a row stops at its
end-of-turn token, its own ``max_new_tokens`` or its cancel event, and the batch stops when every row
has. Written here because transformers' streamers accept a single sequence only.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from medvlab.config import GenerationOptions
from medvlab.errors import GenerationError
from medvlab.vlm.generation import ContextWindow, StopWhen, StreamStats


class BatchModel(Protocol):
    """What the batcher needs from the in-process engine (so neither module imports the other)."""

    model: Any
    context: ContextWindow

    def prepare_batch(self, conversations: list[list[dict[str, Any]]]) -> Any: ...

    def generation_kwargs(self, options: GenerationOptions) -> dict[str, Any]: ...

    def run_generate(self, adapter: str | None = None, **kwargs: Any) -> None: ...


logger = logging.getLogger(__name__)

_END = object()


@dataclass
class _Job:
    messages: list[dict[str, Any]]
    options: GenerationOptions
    stats: StreamStats
    cancel: threading.Event
    sink: queue.Queue[Any] = field(default_factory=queue.Queue)
    produced: int = 0
    done: bool = False


class _Dispatch:
    """Streamer for a batched ``generate()``: row i's new token goes to job i until that job is done."""

    def __init__(self, jobs: list[_Job], eos_ids: set[int]) -> None:
        self.jobs, self.eos_ids = jobs, eos_ids
        self.seen_prompt = False

    def finish(self, job: _Job, reason: str) -> None:
        if not job.done:
            job.done = True
            job.stats.finish_reason = reason
            job.sink.put(_END)

    def put(self, value: Any) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        for job, token in zip(self.jobs, value.reshape(len(self.jobs), -1)[:, -1].tolist(), strict=True):
            if job.done:
                continue
            if job.cancel.is_set():
                self.finish(job, "stop")
                continue
            job.produced += 1
            if token in self.eos_ids:
                self.finish(job, "stop")
                continue
            job.sink.put([int(token)])
            if job.produced >= job.options.max_new_tokens:
                self.finish(job, "length")

    def end(self) -> None:
        for job in self.jobs:
            self.finish(job, job.stats.finish_reason)

    def all_done(self) -> bool:
        return all(j.done or j.cancel.is_set() for j in self.jobs)


class Batcher:
    def __init__(self, backend: BatchModel, max_batch_size: int = 8, window_s: float = 0.02) -> None:
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.window_s = window_s
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.largest = 0

    @staticmethod
    def accepts(options: GenerationOptions) -> bool:
        """Greedy, unconstrained requests batch; sampling and JSON-schema ones run alone."""
        return not options.do_sample and options.json_schema is None and options.seed is None

    def submit(
        self,
        messages: list[dict[str, Any]],
        options: GenerationOptions,
        stats: StreamStats,
        cancel: threading.Event,
    ) -> Generator[list[int], None, None]:
        job = _Job(messages, options, stats, cancel)
        self._ensure_worker()
        self._jobs.put(job)
        try:
            while True:
                item = job.sink.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise GenerationError(
                        f"Generation failed: {type(item).__name__}: {item}",
                        "Retry; if it fails again see the server log (the model itself is loaded).",
                    ) from item
                yield item
        finally:
            cancel.set()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name="medvlab-batcher", daemon=True)
                self._worker.start()
                # stop the worker before the interpreter tears down torch's threads under it
                atexit.register(self.close)

    def close(self) -> None:
        """Let the worker finish its batch and exit (at interpreter exit, or when the backend is dropped)."""
        worker = self._worker
        if worker is not None and worker.is_alive():
            self._jobs.put(None)
            worker.join(timeout=30)

    def _loop(self) -> None:
        held: list[_Job] = []
        while True:
            first = held.pop(0) if held else self._jobs.get()
            if first is None:
                return
            batch = [first]
            key = (first.options.min_new_tokens, first.options.adapter)  # one adapter per generate()
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch_size:
                try:
                    job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:  # closing: finish what was gathered, then stop
                    self._jobs.put(None)
                    break
                same = (job.options.min_new_tokens, job.options.adapter) == key
                (batch if same else held).append(job)
            live = [j for j in batch if not j.cancel.is_set()]
            for j in batch:
                if j.cancel.is_set():  # gone before it started (client left, timeout): release its consumer
                    j.sink.put(_END)
            if live:
                self._run(live)

    def _run(self, jobs: list[_Job]) -> None:
        from transformers import StoppingCriteriaList

        backend = self.backend
        try:
            inputs = backend.prepare_batch([j.messages for j in jobs])
            for j, mask in zip(jobs, inputs["attention_mask"], strict=True):
                j.stats.prompt_tokens = int(mask.sum())
                j.stats.batch_size = len(jobs)
            eos = backend.model.generation_config.eos_token_id
            eos_ids = {int(i) for i in (eos if isinstance(eos, list) else [eos]) if i is not None}
            dispatch = _Dispatch(jobs, eos_ids)
            options = jobs[0].options
            kwargs = {
                **inputs,
                **backend.generation_kwargs(options),
                "max_new_tokens": min(
                    max(j.options.max_new_tokens for j in jobs),
                    backend.context.room(int(inputs["input_ids"].shape[-1])),  # padded prompts + answer fit
                ),
                "streamer": dispatch,
                "stopping_criteria": StoppingCriteriaList([_all_done(dispatch)]),
            }
            self.batches += 1
            self.largest = max(self.largest, len(jobs))
            backend.run_generate(adapter=options.adapter, **kwargs)
            dispatch.end()
        except BaseException as exc:  # every waiting request gets the error, the worker lives on
            logger.exception("batched generation failed")
            for j in jobs:
                if not j.done:
                    j.done = True
                    j.sink.put(exc)


def _all_done(dispatch: _Dispatch) -> Any:
    return StopWhen(dispatch.all_done)
