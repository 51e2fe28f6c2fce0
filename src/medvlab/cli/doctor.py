"""``medvlab doctor``: what medvlab finds on this machine."""

from __future__ import annotations

import json

import typer

from medvlab.cli import options


def doctor(
    device: str | None = options.DEVICE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show versions, accelerators (CUDA, NPU, MLU, XPU, MPS) and the device/dtype/attention medvlab picks."""
    from rich.console import Console
    from rich.table import Table

    from medvlab.doctor import doctor as run_doctor

    report = run_doctor(device)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="medvlab doctor", show_header=False)
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)
