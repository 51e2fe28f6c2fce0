"""``medvlab train export``: a merged model quantized (GPTQ / AWQ / FP8) for serving with vLLM."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    model: Path = typer.Argument(..., help="Merged model folder (from 'medvlab train merge')."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the quantized model."),
    fmt: str = typer.Option("gptq", "--format", "-f", help="gptq, awq (4-bit weights) or fp8."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help="SFT JSONL whose records calibrate gptq / awq."
    ),
    samples: int = typer.Option(64, "--samples", help="Calibration records used (at most)."),
    max_length: int = typer.Option(2048, "--max-length", help="Longest calibration sequence (tokens)."),
) -> None:
    """Quantize a merged model for serving (vision tower kept precise; CUDA GPU + llm-compressor)."""
    from medvlab.cli.train_view import quiet_warnings
    from medvlab.train.export import ExportOptions, export

    quiet_warnings()
    opts = ExportOptions(model, output, fmt, calibration, samples, max_length)
    typer.echo(f"{opts.format} model written to {export(opts)} (serve it with --engine vllm --model)")
