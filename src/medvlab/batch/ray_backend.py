"""The same batch fanned out over a Ray cluster (``--ray ADDRESS``) or a Ray instance started here
(``--ray local``).

Why Ray actors and not Ray Data: a study is a path to a file or a series folder, not a row of a table;
each worker must build its model once and keep it (an actor does exactly that), results must reach one
append-only JSONL on the driver as each study finishes (so a rerun resumes), and a worker that dies must
cost one study, not the batch. A small loop over ``ray.wait`` with one actor per worker gives all of that
with bounded concurrency; Ray Data's ``map_batches`` with an actor pool would add a dataset and its own
output writers without removing any of the above.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from medvlab.batch.results import ResultsFile
from medvlab.batch.runner import BatchSummary, OnRow, WorkFactory, plan, process, record
from medvlab.batch.studies import Study
from medvlab.errors import ConfigError

logger = logging.getLogger(__name__)

FORWARDED_ENV = ("MEDVLAB_", "HF_", "TRANSFORMERS_", "TORCH_", "OMP_NUM_THREADS")
"""Environment variables the driver passes on to the workers (model caches, offline mode, threads)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs Ray, which is not installed.", "pip install medvlab[ray]") from exc
    return ray


class _Worker:
    """One Ray actor: builds the task's worker (loads the model) once, then takes studies one by one."""

    def __init__(self, factory: WorkFactory) -> None:
        self.work = factory()

    def ready(self) -> bool:
        return True

    def run(self, study: Study) -> dict[str, Any]:
        return process(self.work, study)


def connect(address: str, workers: int) -> bool:
    """Join the cluster at ``address`` (or start one here for ``local``) unless Ray is up already in this
    process; True when this call started it (and so should shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": env},
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    try:
        if address == "local":
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"Could not reach the Ray cluster at '{address}': {exc}",
            "Start it with `ray start --head` and pass its address (e.g. --ray 10.0.0.5:6379), "
            "or use --ray local.",
        ) from exc
    return True


def run_ray(
    studies: Sequence[Study],
    factory: WorkFactory,
    results: ResultsFile,
    workers: int = 2,
    address: str = "local",
    on_row: OnRow | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
) -> BatchSummary:
    """Process the studies not done yet on ``workers`` Ray actors, each with its own loaded model."""
    todo, summary = plan(studies, results, workers)
    if not todo:
        return summary
    ray = import_ray()
    started = connect(address, workers)
    try:
        t0 = time.perf_counter()
        actor_class = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(_Worker)

        def new_actor() -> Any:
            return actor_class.remote(factory)

        actors = [new_actor() for _ in range(min(workers, len(todo)))]
        try:  # a worker that cannot load its model stops the batch here, with the reason
            ray.get([a.ready.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise ConfigError(
                f"A Ray worker could not start the task: {exc}",
                "Run the same task without --ray to see the problem, and fix it first.",
            ) from exc
        queue, idle = deque(todo), list(actors)
        running: dict[Any, tuple[Any, Study]] = {}
        while queue or running:
            while idle and queue:
                actor, study = idle.pop(), queue.popleft()
                running[actor.run.remote(study)] = (actor, study)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                actor, study = running.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died (out of memory, killed ...)
                    row = {
                        "study": study.id,
                        "source": study.source,
                        "status": "error",
                        "error": f"the Ray worker died on this study: {type(exc).__name__}",
                        "error_type": type(exc).__name__,
                    }
                    actor = new_actor()
                idle.append(actor)
                record(summary, results, row, on_row)
        summary.seconds = time.perf_counter() - t0
        return summary
    finally:
        if started:
            ray.shutdown()
