"""What ``medvlab train`` shows: no library deprecation noise, and the run summary as a table."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

DEPRECATION_WORDS = ("deprecated", "will be removed")


class _NoDeprecations(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().lower()
        return not any(w in text for w in DEPRECATION_WORDS)


def quiet_warnings() -> None:
    """Hide transformers / TRL / PEFT deprecation and future warnings: they are for us, not for users."""
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*(deprecated|will be removed).*")
    for name in ("transformers", "trl", "peft", "accelerate"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoDeprecations) for f in logger.filters):
            logger.addFilter(_NoDeprecations())


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def summary_table(summary: dict[str, Any], folder: Path) -> Any:
    """The run summary (``run_summary.json``) as a rich Table."""
    from rich.table import Table

    table = Table(title=f"Training run {folder}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("steps", str(summary.get("global_step", 0)))
    table.add_row("epochs", _fmt(summary.get("epoch"), "g"))
    table.add_row("records", str(summary.get("records", "-")))
    table.add_row("loss", f"{_fmt(summary.get('first_loss'))} -> {_fmt(summary.get('final_loss'))}")
    table.add_row("time", f"{_fmt(summary.get('runtime_s'), '.1f')} s")
    table.add_row("records/s", _fmt(summary.get("records_per_s"), ".3g"))
    table.add_row("saved", str(summary.get("saved", "-")))
    files = summary.get("files") or []
    table.add_row("files", ", ".join(files) if files else "none (no step was logged)")
    return table


def show_summary(folder: Path) -> None:
    from rich.console import Console

    from medvlab.train.runs import read_summary

    summary = read_summary(folder)
    if summary is None:
        return
    Console().print(summary_table(summary, folder))
