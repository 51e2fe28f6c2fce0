"""A training run as a separate process: started in its own process group with its output to a log file,
watched (running / finished / failed / stopped, steps done, log tail, metrics rows) and stopped (SIGTERM to
the group, SIGKILL after a grace period).

Pure process management (no torch): the web lab calls it through :mod:`medvlab.services.training`, which
also builds and checks the configuration before anything is launched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOG_NAME = "train.log"
JOB_NAME = "job.json"
SUMMARY_NAME = "run_summary.json"
"""Written by a run that completed (``medvlab.train.runs``, not imported here: it imports torch)."""


@dataclass
class Job:
    """One launched training (or evaluation) process and where its files are."""

    id: str
    """Folder name of the job under ``<data_dir>/runs``."""
    kind: str
    """sft, dpo or grpo."""
    folder: Path
    """The job folder: its configuration, data copy and ``train.log``."""
    output_dir: Path
    """The run's output folder (adapter, checkpoints, metrics, curves)."""
    command: list[str]
    """The command line the process runs."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables set for the process on top of the server's."""
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ended: float | None = None
    stop_requested: bool = False
    restored: str | None = None
    """How a job found on disk by a later server ended (it has no process to watch): see :meth:`restore`."""

    @property
    def log(self) -> Path:
        return self.folder / LOG_NAME

    def launch(self) -> None:
        """Start the process (its own session and process group), output appended to ``train.log``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            fh.write(f"$ {' '.join(self.command)}\n".encode())
            fh.flush()
            self.process = subprocess.Popen(  # our own interpreter and module, an argument list
                self.command,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: stop() signals the run and its workers
                env={**os.environ, **self.env},
                cwd=self.folder,
            )
        self.started, self.ended, self.stop_requested = time.time(), None, False
        logger.info("training job %s started (pid %d): %s", self.id, self.process.pid, self.log)
        meta = {"id": self.id, "kind": self.kind, "command": self.command, "output_dir": str(self.output_dir)}
        (self.folder / JOB_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        self.restored = None

    @classmethod
    def restore(cls, folder: Path, kinds: Collection[str], config_name: str) -> Job | None:
        """The job in ``folder`` as a restarted server finds it, or None when the folder is not one.

        Finished when its run wrote its summary; otherwise stopped (a server stops its running job as it
        shuts down). The command is rebuilt from the kind and the folder's configuration, never read back
        from ``job.json``, and the output folder must lie inside the job folder."""
        try:
            meta = json.loads((folder / JOB_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if kind not in kinds or not (folder / config_name).is_file():
            return None
        output = folder / "output"
        with contextlib.suppress(TypeError, ValueError):
            named = Path(str(meta.get("output_dir") or output)).resolve()
            output = named if named.is_relative_to(folder.resolve()) else output
        job = cls(folder.name, str(kind), folder, output, train_command(str(kind), folder / config_name))
        job.restored = "finished" if (output / SUMMARY_NAME).is_file() else "stopped"
        return job

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.exit_code is None

    @property
    def state(self) -> str:
        """running, finished (exit 0), stopped (by :meth:`stop`) or failed."""
        code = self.exit_code
        if self.process is None:
            return self.restored or "failed"
        if code is None:
            return "running"
        if self.ended is None:
            self.ended = time.time()
        if self.stop_requested:
            return "stopped"
        return "finished" if code == 0 else "failed"

    def steps_done(self) -> int:
        from medvlab.train.runs import read_summary  # here: these modules import transformers / torch

        summary = read_summary(self.output_dir)
        if summary is not None and self.state == "finished":
            return int(summary.get("global_step", 0))
        rows = self.metrics()
        return max((int(r.get("step", 0)) for r in rows), default=0)

    def metrics(self) -> list[dict[str, Any]]:
        from medvlab.train.metrics import read_metrics

        try:
            return read_metrics(self.output_dir)
        except (OSError, json.JSONDecodeError):  # a line half written while we read
            return []

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("r", encoding="utf-8", errors="replace") as fh:
            # progress bars rewrite one line with \r: keep what the line showed last
            return "\n".join(line.rstrip("\n").rsplit("\r", 1)[-1] for line in deque(fh, maxlen=lines))

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the process group, then SIGKILL if it is still there after ``grace_s`` seconds."""
        if not self.running:
            return
        assert self.process is not None
        self.stop_requested = True
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("training job %s ignored SIGTERM for %gs; killing it", self.id, grace_s)
            _signal_group(pgid, signal.SIGKILL)
            self.process.wait()
        _signal_group(pgid, signal.SIGKILL)  # workers (data loaders) the leader left behind
        self.ended = time.time()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(pgid, sig)


def train_command(kind: str, config: Path) -> list[str]:
    """``python -m medvlab.cli.main train KIND --config CONFIG`` with this interpreter."""
    return [sys.executable, "-m", "medvlab.cli.main", "train", kind, "--config", str(config)]
