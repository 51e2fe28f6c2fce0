"""``medvlab info`` and ``medvlab render``: look at an image without a model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medvlab.cli import options
from medvlab.imaging.types import MedImage


def _load(path: Path) -> MedImage:
    from rich.progress import Progress

    from medvlab.imaging import load

    with Progress(transient=True) as bar:
        task = bar.add_task("Reading", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return load(path, progress=progress)


def info(image: Path = typer.Argument(..., help="Image file or DICOM folder.")) -> None:
    """Print what medvlab reads from an image: format, modality, shape, spacing, orientation, window."""
    typer.echo(json.dumps(_load(image).summary(), indent=2, default=str))


def render(
    image: Path = typer.Argument(..., help="Image file or DICOM folder."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    slice_index: int | None = typer.Option(None, "--slice", "-s", help="Slice (0-based; default: middle)."),
    window: str | None = options.WINDOW,
) -> None:
    """Write one slice, windowed, as a PNG you can look at."""
    from medvlab.imaging import render_slice
    from medvlab.imaging.windows import to_pil

    img = _load(image)
    index = img.n_slices // 2 if slice_index is None else slice_index
    to_pil(render_slice(img, index, window)).save(output)
    typer.echo(f"wrote {output} (slice {index + 1}/{img.n_slices})")
