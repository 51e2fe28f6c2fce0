"""``medvlab pacs search|get|ask|segment|report|import-reports``: the lab on a PACS over DICOMweb.

Endpoints come from ``MEDVLAB_PACS='{"name": {"url": "http://host/dicom-web"}}'`` (or the JSON file named by
``MEDVLAB_PACS_CONFIG``); ``--pacs NAME`` picks one (optional when only one is configured).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from medvlab.cli import options

pacs_app = typer.Typer(
    help="Search a PACS (DICOMweb), work on its series, store results back.", no_args_is_help=True
)

PACS = typer.Option(None, "--pacs", "-p", help="Configured PACS name (MEDVLAB_PACS); optional if only one.")
STUDY = typer.Option(..., "--study", help="StudyInstanceUID.")
SERIES = typer.Option(None, "--series", help="SeriesInstanceUID (default: the study's largest image series).")
JSON = typer.Option(False, "--json", help="Print JSON.")
NO_STORE = typer.Option(False, "--no-store", help="Do not store the results back in the PACS.")
NO_SR = typer.Option(False, "--no-sr", help="Store no DICOM SR beside the SEG / PDF.")
MAX_NEW_TOKENS = typer.Option(None, "--max-new-tokens", min=1, help="Most tokens to generate.")


def _lab(**overrides: Any) -> Any:
    from medvlab.config import settings_with
    from medvlab.services import Lab

    return Lab(settings_with(**overrides))


@contextmanager
def _bar(desc: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr fed by ``progress(done, total)``."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="instance", leave=False, disable=None)  # no bar when not a terminal
    try:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield progress
    finally:
        bar.close()


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _stored_lines(stored: dict[str, Any] | None) -> None:
    if not stored:
        return
    for item in stored["instances"]:
        typer.echo(f"stored {item['kind']} {item['sop_instance_uid']} in study {stored['study_uid']}")


@pacs_app.command("list")
def list_pacs() -> None:
    """The configured PACS endpoints (names, URLs, where their credentials come from)."""
    from medvlab.services import pacs

    for row in pacs.listing(_lab().settings):
        typer.echo(f"{row['name']}  {row['url']}  ({row['credentials']})")


@pacs_app.command("search")
def search(
    name: str | None = PACS,
    study: str | None = typer.Option(None, "--study", help="List the series of this study."),
    patient_id: str | None = typer.Option(None, "--patient-id", help="PatientID."),
    accession: str | None = typer.Option(None, "--accession", help="AccessionNumber."),
    date: str | None = typer.Option(None, "--date", help="StudyDate YYYYMMDD or range YYYYMMDD-YYYYMMDD."),
    modality: str | None = typer.Option(None, "--modality", help="CT, MR, CR, SEG, SR, DOC, ..."),
    limit: int = typer.Option(100, "--limit", min=1, max=10000, help="Most studies listed."),
    as_json: bool = JSON,
) -> None:
    """Find studies (QIDO-RS); with --study, list that study's series."""
    from medvlab.pacs import Filters
    from medvlab.services import pacs

    settings = _lab().settings
    if study:
        rows = [s.as_dict() for s in pacs.search_series(settings, name, study, modality)]
        if as_json:
            return _print(rows)
        for s in rows:
            typer.echo(
                f"{s['series_uid']}  {s['modality']:<4} #{s['number'] if s['number'] is not None else '-'}  "
                f"{s['n_instances'] or '?'} instance(s)  {s['description']}"
            )
        return None
    filters = Filters(patient_id=patient_id, accession=accession, date=date, modality=modality)
    studies = [s.as_dict() for s in pacs.search_studies(settings, name, filters, limit)]
    if as_json:
        return _print(studies)
    if not studies:
        typer.echo("no matching studies")
    for s in studies:
        typer.echo(
            f"{s['study_uid']}  patient {s['patient_id'] or '-'}  {s['date'] or '-'}  "
            f"accession {s['accession'] or '-'}  {'/'.join(s['modalities'])}  {s['description']}"
        )
    return None


@pacs_app.command("get")
def get(
    name: str | None = PACS,
    study: str = STUDY,
    series: str | None = SERIES,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Folder to write the series' files into."
    ),
    as_json: bool = JSON,
) -> None:
    """Retrieve a series (WADO-RS) into a volume; print what it is, and write its files with -o."""
    from medvlab.services import pacs

    lab = _lab()
    with _bar("Retrieving") as progress:
        info, files = pacs.get(lab, name, study, series, output, progress)
    if as_json:
        return _print(info)
    image = info["image"]
    typer.echo(
        f"series {info['series']['series_uid']} ({info['series']['modality']}): {len(files)} instance(s) -> "
        f"{image['format']} {'x'.join(map(str, image['shape']))}, spacing "
        f"{', '.join(f'{v:g}' for v in image['spacing_mm'])} mm"
    )
    if output is not None:
        typer.echo(f"wrote {len(files)} file(s) to {output}")
    return None


@pacs_app.command("ask")
def ask(
    question: str = typer.Argument(..., help="The question, in Chinese or English."),
    name: str | None = PACS,
    study: str = STUDY,
    series: str | None = SERIES,
    store_sr: bool = typer.Option(False, "--store-sr", help="Store the answer as a DICOM SR in the study."),
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    adapter: str | None = options.ADAPTER,
    max_new_tokens: int | None = MAX_NEW_TOKENS,
    as_json: bool = JSON,
) -> None:
    """Ask about a series; the answer streams as it is generated."""
    from medvlab.services import pacs

    lab = _lab(model=model, device=device, adapter=adapter, max_new_tokens=max_new_tokens)

    def show(chunk: str) -> None:
        typer.echo(chunk, nl=False)

    with _bar("Retrieving") as progress:
        result = pacs.ask(
            lab,
            name,
            study,
            question,
            series,
            store_sr=store_sr,
            progress=progress,
            on_text=None if as_json else show,
        )
    if as_json:
        return _print(result.as_dict())
    typer.echo()
    _stored_lines(result.stored.as_dict() if result.stored else None)
    return None


@pacs_app.command("segment")
def segment(
    name: str | None = PACS,
    study: str = STUDY,
    series: str | None = SERIES,
    seg_model: str | None = typer.Option(
        None, "--seg-model", help="Built-in name or checkpoint (brain-mask)."
    ),
    no_store: bool = NO_STORE,
    no_sr: bool = NO_SR,
    device: str | None = options.DEVICE,
    as_json: bool = JSON,
) -> None:
    """Segment a series; store the DICOM SEG and a TID 1500 SR of the volumes in the same study."""
    from medvlab.services import pacs

    lab = _lab(device=device)
    with _bar("Retrieving") as progress:
        result = pacs.segment(
            lab,
            name,
            study,
            series,
            model=seg_model,
            store_results=not no_store,
            with_sr=not no_sr,
            progress=progress,
        )
    if as_json:
        return _print(result.as_dict())
    for structure, ml in result.volumes_ml.items():
        typer.echo(f"{structure}: {ml:.1f} mL")
    _stored_lines(result.stored.as_dict() if result.stored else None)
    return None


@pacs_app.command("report")
def report(
    question: str = typer.Argument(..., help="The question, in Chinese or English."),
    name: str | None = PACS,
    study: str = STUDY,
    series: str | None = SERIES,
    output: Path | None = typer.Option(None, "--output", "-o", help="Also write the PDF here."),
    with_segmentation: bool = typer.Option(False, "--segment", help="Segment first; cite the volumes."),
    no_store: bool = NO_STORE,
    no_sr: bool = NO_SR,
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    adapter: str | None = options.ADAPTER,
    max_new_tokens: int | None = MAX_NEW_TOKENS,
    as_json: bool = JSON,
) -> None:
    """Write the PDF report of a series; store it as an Encapsulated PDF (and a text SR) in the study."""
    from medvlab.services import pacs

    lab = _lab(model=model, device=device, adapter=adapter, max_new_tokens=max_new_tokens)
    with _bar("Retrieving") as progress:
        result = pacs.report(
            lab,
            name,
            study,
            question,
            series,
            store_results=not no_store,
            with_sr=not no_sr,
            segment_first=with_segmentation,
            progress=progress,
        )
    if output is not None:
        output.write_bytes(result.pdf)
    if as_json:
        return _print(result.as_dict())
    if output is not None:
        typer.echo(f"wrote {output} ({len(result.pdf) // 1024} KiB)")
    _stored_lines(result.stored.as_dict() if result.stored else None)
    return None


@pacs_app.command("import-reports")
def import_reports(
    name: str | None = PACS,
    patient_id: str | None = typer.Option(None, "--patient-id", help="The patient's prior studies."),
    date: str | None = typer.Option(None, "--date", help="Studies of a date range YYYYMMDD-YYYYMMDD."),
    limit: int = typer.Option(200, "--limit", min=1, max=10000, help="Most studies read."),
) -> None:
    """Add the text of prior reports (SR documents, encapsulated PDFs) to the knowledge base."""
    from medvlab.services import pacs

    result = pacs.import_reports(_lab(), name, patient_id, date, limit)
    typer.echo(
        f"imported {result['reports']} report(s) ({result['added']} new) from {len(result['sources'])} "
        "stud(ies); "
        f"the knowledge base now holds {result['total']}"
    )
    for source in result["sources"]:
        typer.echo(f"  {source}")
