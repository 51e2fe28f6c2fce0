"""``medvlab info`` and ``medvlab render``: look at an image without a model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medvlab.cli import options
from medvlab.imaging.types import MedImage

VOLUME = typer.Option(
    None,
    "--volume",
    min=0,
    help="For a 4-D NIfTI: which volume to read (0-based). Required when it holds several.",
)


def _load(path: Path, volume: int | None = None) -> MedImage:
    from rich.progress import Progress

    from medvlab.imaging import load

    with Progress(transient=True) as bar:
        task = bar.add_task("Reading", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return load(path, progress=progress, volume=volume)


def info(
    image: Path = typer.Argument(..., help="Image file or DICOM folder."), volume: int | None = VOLUME
) -> None:
    """Print what medvlab reads from an image: format, modality, shape, spacing, orientation, window."""
    typer.echo(json.dumps(_load(image, volume).summary(), indent=2, default=str))


def render(
    image: Path = typer.Argument(..., help="Image file or DICOM folder."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    slice_number: int | None = typer.Option(
        None,
        "--slice",
        "-s",
        min=1,
        help="Slice number from 1, as the web viewer and reports count (default: the middle slice).",
    ),
    window: str | None = options.WINDOW,
    volume: int | None = VOLUME,
) -> None:
    """Write one slice, windowed, as a PNG you can look at; prints the slice as "slice N/total"."""
    from medvlab.errors import RequestError
    from medvlab.imaging import render_slice
    from medvlab.imaging.windows import to_pil

    img = _load(image, volume)
    if slice_number is not None and slice_number > img.n_slices:
        raise RequestError(
            f"--slice {slice_number} is past the last slice of {image.name} ({img.n_slices} slices).",
            f"Give a slice number from 1 to {img.n_slices}.",
        )
    index = img.n_slices // 2 if slice_number is None else slice_number - 1
    to_pil(render_slice(img, index, window)).save(output)
    typer.echo(f"wrote {output} (slice {index + 1}/{img.n_slices})")
