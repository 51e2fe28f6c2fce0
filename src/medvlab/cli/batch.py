"""``medvlab batch segment|ask STUDIES... -o results/``: one task over many studies, locally or on Ray,
with a progress bar; one JSONL row per study in ``results/results.jsonl`` (a rerun skips done studies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from medvlab.cli import options

batch_app = typer.Typer(
    help="Segment or ask about many studies (folders, NIfTI files, DICOM series), locally or on Ray.",
    no_args_is_help=True,
)

STUDIES = typer.Argument(
    ...,
    help="NIfTI files, DICOM files, DICOM series folders, folders holding them, or pacs://NAME/STUDY_UID.",
)
OUTPUT = typer.Option(..., "--output", "-o", help="Results folder (results.jsonl + per-study files).")
WORKERS = typer.Option(1, "--workers", "-w", help="Studies at a time (threads, or Ray actors with --ray).")
RAY = typer.Option(
    None, "--ray", help="Run on Ray: a cluster address (host:6379, ray://host:10001) or 'local'."
)
GPUS = typer.Option(0.0, "--gpus-per-worker", help="GPUs each Ray worker reserves (e.g. 1, or 0.5).")


def _run(task: Any, studies: list[str], workers: int, ray: str | None, gpus: float) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medvlab.services.batch import RESULTS_NAME, run_batch

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=console,
        transient=True,
    ) as bar:
        job = bar.add_task(f"{task.kind} (loading the model)", total=None, failed=0)
        failed = 0

        def on_start(todo: int, skipped: int) -> None:
            bar.update(job, total=todo)
            if skipped:
                console.print(f"skipping {skipped} studies already done")

        def on_row(row: dict[str, Any]) -> None:
            nonlocal failed
            failed += row["status"] != "ok"
            if row["status"] != "ok":
                console.print(f"[red]failed[/red] {row['source']}: {row.get('error')}")
            bar.update(job, advance=1, failed=failed, description=task.kind)

        summary = run_batch(task, studies, workers, ray, on_start, on_row, gpus)
    typer.echo(
        f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped of {summary.total} studies "
        f"in {summary.seconds:.1f} s ({summary.studies_per_minute:.1f} studies/min); "
        f"rows in {task.out_dir / RESULTS_NAME}"
    )


@batch_app.command("segment")
def segment(
    studies: list[str] = STUDIES,
    output: Path = OUTPUT,
    seg_model: str | None = typer.Option(
        None, "--seg-model", help="Built-in name or checkpoint (default: MEDVLAB_SEG_MODEL)."
    ),
    workers: int = WORKERS,
    ray: str | None = RAY,
    gpus_per_worker: float = GPUS,
    device: str | None = options.DEVICE,
) -> None:
    """Segment every study: volumes (mL) per structure, a NIfTI mask, and a DICOM SEG + SR for DICOM."""
    from medvlab.config import settings_with
    from medvlab.services.batch import BatchTask

    task = BatchTask("segment", settings_with(device=device), output, seg_model=seg_model)
    _run(task, studies, workers, ray, gpus_per_worker)


@batch_app.command("ask")
def ask(
    studies: list[str] = STUDIES,
    output: Path = OUTPUT,
    question: str = typer.Option(..., "--question", "-q", help="The question asked of every study."),
    workers: int = WORKERS,
    ray: str | None = RAY,
    gpus_per_worker: float = GPUS,
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    adapter: str | None = options.ADAPTER,
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Most tokens per answer."),
) -> None:
    """Ask one question about every study; the answers (research use only) go to results.jsonl."""
    from medvlab.config import settings_with
    from medvlab.services.batch import BatchTask

    settings = settings_with(model=model, device=device, adapter=adapter, max_new_tokens=max_new_tokens)
    task = BatchTask("ask", settings, output, question=question)
    _run(task, studies, workers, ray, gpus_per_worker)
