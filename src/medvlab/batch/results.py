"""The results of a batch: one JSON object per line, one line per study, appended as studies finish, so
an interrupted batch keeps what it did and a rerun skips the studies already done (``status == "ok"``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from medvlab.errors import ConfigError


class ResultsFile:
    """``results.jsonl`` in a batch's output folder; thread-safe appends, flushed per row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def rows(self) -> list[dict[str, Any]]:
        """Every row written so far (a torn last line from a killed run is ignored)."""
        if not self.path.exists():
            return []
        rows = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a killed run was writing; the study is simply done again
            if not isinstance(row, dict) or "study" not in row:
                raise ConfigError(
                    f"Line {n} of '{self.path}' is not a medvlab batch result.",
                    "Use a fresh output folder (-o) for this batch.",
                )
            rows.append(row)
        return rows

    def done(self) -> set[str]:
        """Ids of the studies whose latest row says ``ok``."""
        latest: dict[str, str] = {}
        for row in self.rows():
            latest[str(row["study"])] = str(row.get("status"))
        return {study for study, status in latest.items() if status == "ok"}

    def append(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as f:
                if f.tell() > 0:  # a killed run may have left half a line: start on a fresh one
                    f.seek(-1, 2)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write(line.encode("utf-8") + b"\n")
                f.flush()
