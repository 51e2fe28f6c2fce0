"""``medvlab ask IMAGE "question"``: stream an answer to the terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medvlab.cli import options

if TYPE_CHECKING:
    from PIL import Image


def ask(
    image: Path = typer.Argument(
        ..., help="PNG/JPG, DICOM file, DICOM series folder or NIfTI (.nii/.nii.gz)."
    ),
    question: str = typer.Argument(..., help="The question, in Chinese or English."),
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    dtype: str | None = options.DTYPE,
    adapter: str | None = options.ADAPTER,
    engine: str | None = options.ENGINE,
    engine_url: str | None = options.ENGINE_URL,
    engine_model: str | None = options.ENGINE_MODEL,
    engine_key_env: str | None = options.ENGINE_KEY_ENV,
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
    as_json: bool = typer.Option(
        False, "--json", help="Answer as JSON (findings, location, size, impression, ...)."
    ),
    heatmap: Path | None = typer.Option(
        None, "--heatmap", help="Save the answer's attention map(s) as PNG here."
    ),
    kb: int = typer.Option(0, "--kb", help="Ground the answer in the top-K knowledge-base snippets."),
) -> None:
    """Ask a question about a medical image and stream the answer."""
    from rich.console import Console

    from medvlab.config import settings_with
    from medvlab.services import Lab
    from medvlab.vlm.prompting import Turn

    err = Console(stderr=True)
    lab = Lab(
        settings_with(
            model=model,
            device=device,
            dtype=dtype,
            adapter=adapter,
            engine=engine,
            engine_url=engine_url,
            engine_model=engine_model,
            engine_key_env=engine_key_env,
        )
    )
    with err.status("Reading the image…"):
        img = lab.load_image(image)
    err.print(f"[dim]{img.source_format} {img.modality} {'x'.join(map(str, img.pixels.shape))}[/dim]")
    with err.status(f"Loading {lab.model_id}…"):
        _ = lab.backend
    prompt = lab.prompt_options(window, max_slices, language)  # type: ignore[arg-type]
    generation = lab.generation_options(
        max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature, seed=seed
    )
    turns = [Turn("user", question, [img])]
    if heatmap:
        lab.require("attention_maps")  # before answering: the engine may not be able to explain
    result = lab.answer(turns, prompt, generation, structured=as_json, kb=kb)
    if result.data is not None:
        sys.stdout.write(json.dumps(result.data, ensure_ascii=False, indent=2) + "\n")
        return
    answer = ""
    for chunk in result.chunks or ():
        answer += chunk
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if heatmap:
        save_heatmaps(lab.explain(turns, answer, prompt), heatmap)
        err.print(f"[dim]attention map written to {heatmap}[/dim]")


def save_heatmaps(pictures: list[tuple[Image.Image, str]], path: Path) -> None:
    """One picture: as is. Several slices: side by side in one strip, in slice order."""
    from PIL import Image as PILImage

    if len(pictures) == 1:
        pictures[0][0].save(path)
        return
    w = sum(p.width for p, _ in pictures)
    h = max(p.height for p, _ in pictures)
    strip = PILImage.new("RGB", (w, h))
    x = 0
    for pic, _ in pictures:
        strip.paste(pic, (x, 0))
        x += pic.width
    strip.save(path)
