"""``medvlab kb add FILES`` and ``medvlab kb search QUERY``: the knowledge base of prior reports."""

from __future__ import annotations

import json
from pathlib import Path

import typer

kb_app = typer.Typer(help="Knowledge base of prior reports (Chinese and English).", no_args_is_help=True)


@kb_app.command("add")
def add(files: list[Path] = typer.Argument(..., help=".txt/.md/.json/.jsonl/.csv files or folders.")) -> None:
    """Store report snippets so answers can be grounded in them."""
    from medvlab.config import settings_with
    from medvlab.services import Lab

    lab = Lab(settings_with())
    n = lab.kb_add(files)
    typer.echo(f"added {n} snippet(s); the knowledge base now holds {lab.kb_count()}")


@kb_app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for, in Chinese or English."),
    k: int = typer.Option(5, "-k", help="How many snippets."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find the prior-report snippets closest to a query."""
    from medvlab.config import settings_with
    from medvlab.services import Lab

    hits = Lab(settings_with()).kb_search(query, k)
    if as_json:
        rows = [{**h.as_dict(), "score": round(h.score, 5)} for h in hits]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not hits:
        typer.echo("no matching snippets")
    for h in hits:
        typer.echo(f"{h.citation()}  [{'+'.join(h.via)}]\n    {h.snippet.text[:200]}")
