"""``medvlab report IMAGE QUESTION -o report.pdf``: ask, then write a PDF (and a DICOM Encapsulated PDF,
and the answer as a DICOM text SR)."""

from __future__ import annotations

from pathlib import Path

import typer

from medvlab.cli import options


def report(
    image: Path = typer.Argument(..., help="PNG/JPG, DICOM file, DICOM series folder or NIfTI."),
    question: str = typer.Argument(..., help="The question, in Chinese or English."),
    output: Path = typer.Option(..., "--output", "-o", help="PDF file to write."),
    dicom: Path | None = typer.Option(None, "--dicom", help="Also write a DICOM Encapsulated PDF here."),
    dicom_sr: Path | None = typer.Option(
        None, "--dicom-sr", help="Also write the answer as a DICOM text SR here (DICOM input)."
    ),
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    adapter: str | None = options.ADAPTER,
    engine: str | None = options.ENGINE,
    engine_url: str | None = options.ENGINE_URL,
    engine_model: str | None = options.ENGINE_MODEL,
    engine_key_env: str | None = options.ENGINE_KEY_ENV,
    window: str | None = options.WINDOW,
    structured: bool = typer.Option(False, "--structured", help="Add the structured findings table."),
    heatmap: bool = typer.Option(False, "--heatmap", help="Add attention maps of the answer."),
    kb: int = typer.Option(0, "--kb", help="Ground the answer in the top-K knowledge-base snippets."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Most tokens to generate."),
) -> None:
    """Answer a question about an image and write the research report as PDF."""
    from rich.console import Console

    from medvlab.config import settings_with
    from medvlab.services import Lab
    from medvlab.services.report import ReportRequest, answer_sr, as_dicom, make_report

    err = Console(stderr=True)
    lab = Lab(
        settings_with(
            model=model,
            device=device,
            adapter=adapter,
            engine=engine,
            engine_url=engine_url,
            engine_model=engine_model,
            engine_key_env=engine_key_env,
        )
    )
    img = lab.load_image(image)
    req = ReportRequest(
        question=question,
        window=window,
        max_new_tokens=max_new_tokens,
        structured=structured,
        heatmap=heatmap,
        kb=kb,
    )
    with err.status("Answering…"):
        pdf, answer = make_report(lab, img, req)
    output.write_bytes(pdf)
    typer.echo(f"wrote {output} ({len(pdf) // 1024} KiB)")
    if dicom:
        dicom.write_bytes(as_dicom(pdf, img))
        typer.echo(
            f"wrote {dicom} (DICOM Encapsulated PDF, study {img.metadata.get('StudyInstanceUID', 'new')})"
        )
    if dicom_sr:
        dicom_sr.write_bytes(answer_sr(lab, img, question, answer))
        typer.echo(f"wrote {dicom_sr} (DICOM text SR of the answer)")
