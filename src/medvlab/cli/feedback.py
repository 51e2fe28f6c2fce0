"""``medvlab feedback export``: turn clinicians' ratings into DPO or SFT training data."""

from __future__ import annotations

from pathlib import Path

import typer

feedback_app = typer.Typer(help="Clinician feedback collected by the lab.", no_args_is_help=True)


@feedback_app.command("export")
def export(
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write."),
    fmt: str = typer.Option("dpo", "--format", "-f", help="dpo (preference pairs) or sft (good answers)."),
) -> None:
    """Write stored feedback as a dataset that `medvlab train dpo` / `train sft` accepts."""
    from medvlab.config import settings_with
    from medvlab.errors import look_up_option
    from medvlab.services import Lab

    fmt = look_up_option(fmt, ["dpo", "sft"], "format")
    lab = Lab(settings_with())
    n = lab.feedback_export_to(output, fmt)
    typer.echo(f"wrote {n} {fmt} record(s) from {lab.feedback_count()} rating(s) to {output}")
