"""Run one task per study, a bounded number at a time, writing a result row per study as it finishes.

The task comes as a :data:`WorkFactory`: a picklable callable that builds the worker (loading its model)
once; the worker then takes one :class:`~medvlab.batch.studies.Study` at a time and returns the row's
fields. A study that raises becomes an ``error`` row and the batch goes on; only a worker that cannot be
built at all (no model) stops it, before any study is tried.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from medvlab.batch.results import ResultsFile
from medvlab.batch.studies import Study
from medvlab.errors import ConfigError, MedvlabError

logger = logging.getLogger(__name__)

Work = Callable[[Study], dict[str, Any]]
"""One study -> the fields of its result row (volumes, answer, timings ...); raises when it fails."""
WorkFactory = Callable[[], Work]
"""Builds a worker (loads its model) once per process/actor; must pickle to reach Ray workers."""
OnRow = Callable[[dict[str, Any]], None]


@dataclass
class BatchSummary:
    """What a batch did."""

    total: int
    skipped: int = 0
    """Studies already ``ok`` in the results file (a resumed batch)."""
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def studies_per_minute(self) -> float:
        done = self.ok + self.failed
        return 60.0 * done / self.seconds if self.seconds > 0 else 0.0


def process(work: Work, study: Study) -> dict[str, Any]:
    """The result row of ``study``: the worker's fields and ``status: ok``, or ``status: error`` with
    the reason (a MedvlabError's message says the fix)."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"study": study.id, "source": study.source}
    try:
        row.update(work(study))
        row["status"] = "ok"
    except MedvlabError as exc:
        row.update(status="error", error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # a broken study must never stop the batch
        logger.exception("study %s failed", study.id)
        row.update(status="error", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    row["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return row


def pending(studies: Sequence[Study], results: ResultsFile) -> tuple[list[Study], int]:
    """The studies still to do, and how many are skipped because they are done already."""
    done = results.done()
    todo = [s for s in studies if s.id not in done]
    return todo, len(studies) - len(todo)


def plan(studies: Sequence[Study], results: ResultsFile, workers: int) -> tuple[list[Study], BatchSummary]:
    """The studies still to do and the summary that counts the skipped ones (both runners start here)."""
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1.", "Use e.g. --workers 2.")
    todo, skipped = pending(studies, results)
    return todo, BatchSummary(total=len(studies), skipped=skipped)


def record(summary: BatchSummary, results: ResultsFile, row: dict[str, Any], on_row: OnRow | None) -> None:
    results.append(row)
    summary.rows.append(row)
    if row["status"] == "ok":
        summary.ok += 1
    else:
        summary.failed += 1
    if on_row is not None:
        on_row(row)


def run_local(
    studies: Sequence[Study],
    factory: WorkFactory,
    results: ResultsFile,
    workers: int = 1,
    on_row: OnRow | None = None,
) -> BatchSummary:
    """Process the studies not done yet in this process with at most ``workers`` at a time.

    The workers are threads sharing one model: reading and writing files overlap, and a model that batches
    concurrent requests (the VLM engine) or guards itself with a lock (segmentation) stays correct.
    """
    todo, summary = plan(studies, results, workers)
    if not todo:
        return summary
    t0 = time.perf_counter()
    work = factory()  # the model loads once; failing here stops the batch before any study
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medvlab-batch") as pool:
        futures = [pool.submit(process, work, study) for study in todo]
        for future in as_completed(futures):
            record(summary, results, future.result(), on_row)
    summary.seconds = time.perf_counter() - t0
    return summary
