"""``medvlab report IMAGE QUESTION -o report.pdf``: ask, then write a PDF (and a DICOM Encapsulated PDF)."""

from __future__ import annotations

from pathlib import Path

import typer

from medvlab.cli import options


def report(
    image: Path = typer.Argument(..., help="PNG/JPG, DICOM file, DICOM series folder or NIfTI."),
    question: str = typer.Argument(..., help="The question, in Chinese or English."),
    output: Path = typer.Option(..., "--output", "-o", help="PDF file to write."),
    dicom: Path | None = typer.Option(None, "--dicom", help="Also write a DICOM Encapsulated PDF here."),
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    adapter: str | None = options.ADAPTER,
    window: str | None = options.WINDOW,
    structured: bool = typer.Option(False, "--structured", help="Add the structured findings table."),
    heatmap: bool = typer.Option(False, "--heatmap", help="Add attention maps of the answer."),
    kb: int = typer.Option(0, "--kb", help="Ground the answer in the top-K knowledge-base snippets."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Most tokens to generate."),
) -> None:
    """Answer a question about an image and write the research report as PDF."""
    from rich.console import Console

    from medvlab.config import settings_with
    from medvlab.reports.dicom import encapsulate_pdf
    from medvlab.services import Lab
    from medvlab.vlm.prompting import Turn

    err = Console(stderr=True)
    lab = Lab(settings_with(model=model, device=device, adapter=adapter))
    img = lab.load_image(image)
    turns = [Turn("user", question, [img])]
    prompt = lab.prompt_options(window)
    generation = lab.generation_options(max_new_tokens=max_new_tokens)
    hits = lab.kb_search(question, kb) if kb else []
    with err.status("Answering…"):
        answer = "".join(lab.chat(turns, prompt, generation, grounding=hits))
        findings = lab.structured(turns, prompt, generation) if structured else None
        heatmaps = lab.explain(turns, answer, prompt) if heatmap else []
    pdf = lab.report(
        img, [(question, answer)], window=window, structured=findings, heatmaps=heatmaps, citations=hits
    )
    output.write_bytes(pdf)
    typer.echo(f"wrote {output} ({len(pdf) // 1024} KiB)")
    if dicom:
        encapsulate_pdf(pdf, img.metadata).save_as(dicom, enforce_file_format=True)
        typer.echo(
            f"wrote {dicom} (DICOM Encapsulated PDF, study {img.metadata.get('StudyInstanceUID', 'new')})"
        )
