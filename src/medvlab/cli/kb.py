"""``medvlab kb add|list|search|remove|clear|eval``: the knowledge base of prior reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from medvlab.services import Lab

kb_app = typer.Typer(help="Knowledge base of prior reports (Chinese and English).", no_args_is_help=True)


def _lab() -> Lab:
    from medvlab.config import settings_with
    from medvlab.services import Lab

    return Lab(settings_with())


@kb_app.command("add")
def add(files: list[Path] = typer.Argument(..., help=".txt/.md/.json/.jsonl/.csv files or folders.")) -> None:
    """Store report snippets so answers can be grounded in them (a text already stored is not doubled)."""
    done = _lab().kb_add_checked(files)
    dup = f" ({done.duplicates} already stored)" if done.duplicates else ""
    typer.echo(f"added {done.added} snippet(s){dup}; the knowledge base now holds {done.total}")


@kb_app.command("list")
def list_(
    page: int = typer.Option(1, "--page", "-p", help="Page number, from 1."),
    per_page: int = typer.Option(20, "--per-page", "-n", help="Snippets per page (at most 200)."),
    contains: str = typer.Option("", "--contains", help="Only snippets whose title/text/source has this."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the stored snippets, oldest first, one page at a time."""
    out = _lab().kb_list(page, per_page, contains)
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if not out["snippets"]:
        typer.echo(
            "no snippets" if out["total"] == 0 else f"page {page} is past the end ({out['pages']} pages)"
        )
        return
    for s in out["snippets"]:
        text = " ".join(s["text"].split())
        typer.echo(
            f"{s['id']:>6}  {s['title']}  ({s['source'] or '-'}, {s['language']})\n        {text[:100]}"
        )
    typer.echo(f"page {out['page']}/{out['pages']}, {out['total']} snippet(s)")


@kb_app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for, in Chinese or English."),
    k: int = typer.Option(5, "-k", help="How many snippets."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find the prior-report snippets closest to a query."""
    hits = _lab().kb_search(query, k)
    if as_json:
        rows = [{**h.as_dict(), "score": round(h.score, 5)} for h in hits]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not hits:
        typer.echo("no matching snippets")
    for h in hits:
        typer.echo(f"{h.citation()}  [{'+'.join(h.via)}]  id {h.snippet.id}\n    {h.snippet.text[:200]}")


@kb_app.command("remove")
def remove(snippet_id: int = typer.Argument(..., help="The snippet's id (see `medvlab kb list`).")) -> None:
    """Remove one snippet."""
    gone = _lab().kb_remove(snippet_id)
    typer.echo(f"removed {gone['id']}: {gone['title']}")


@kb_app.command("clear")
def clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm: really remove every snippet."),
) -> None:
    """Remove every snippet (asks for --yes)."""
    from medvlab.errors import ConfigError

    if not yes:
        raise ConfigError(
            "Clearing removes every snippet of the knowledge base and cannot be undone.",
            "Run `medvlab kb clear --yes` to confirm.",
        )
    typer.echo(f"removed {_lab().kb_clear()} snippet(s); the knowledge base is empty")


@kb_app.command("eval")
def evaluate(
    snippets: Path = typer.Argument(..., help="JSONL of {id, title, text} snippets."),
    queries: Path = typer.Argument(..., help="JSONL of {query, expected} (expected: a snippet id)."),
    k: int = typer.Option(3, "-k", help="Recall is measured at this rank."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recall@k and MRR of retrieval on a labelled set (in a fresh temporary knowledge base)."""
    from medvlab.kb.evaluate import evaluate_files

    report = evaluate_files(snippets, queries, k)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    for miss in report.misses:
        typer.echo(f"miss  {miss}")
    for lang, m in report.by_language.items():
        typer.echo(f"{lang}: recall@{k} {m['recall']:.3f}  MRR {m['mrr']:.3f}  ({m['queries']} queries)")
    typer.echo(
        f"all: recall@{k} {report.recall:.3f}  MRR {report.mrr:.3f}  ({report.queries} queries over "
        f"{report.snippets} snippets, {report.seconds_per_query * 1000:.1f} ms/query)"
    )
