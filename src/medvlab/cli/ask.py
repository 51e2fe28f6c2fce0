"""``medvlab ask IMAGE "question"``: stream an answer to the terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from medvlab.cli import options


def ask(
    image: Path = typer.Argument(
        ..., help="PNG/JPG, DICOM file, DICOM series folder or NIfTI (.nii/.nii.gz)."
    ),
    question: str = typer.Argument(..., help="The question, in Chinese or English."),
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    dtype: str | None = options.DTYPE,
    adapter: str | None = options.ADAPTER,
    window: str | None = options.WINDOW,
    max_slices: int | None = typer.Option(
        None, "--max-slices", help="Most slices of a volume sent to the model."
    ),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Most tokens to generate."),
    language: str | None = typer.Option(
        None, "--lang", help="Answer language: en or zh (default: the question's)."
    ),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float | None = typer.Option(
        None, "--temperature", help="Sampling temperature (with --sample)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for sampling."),
) -> None:
    """Ask a question about a medical image and stream the answer."""
    from rich.console import Console

    from medvlab.config import settings_with
    from medvlab.services import Lab

    err = Console(stderr=True)
    lab = Lab(settings_with(model=model, device=device, dtype=dtype, adapter=adapter))
    with err.status("Reading the image…"):
        img = lab.load_image(image)
    err.print(f"[dim]{img.source_format} {img.modality} {'x'.join(map(str, img.pixels.shape))}[/dim]")
    with err.status(f"Loading {lab.model_id}…"):
        _ = lab.backend
    prompt = lab.prompt_options(window, max_slices, language)  # type: ignore[arg-type]
    generation = lab.generation_options(
        max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature, seed=seed
    )
    for chunk in lab.ask(img, question, prompt, generation):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
