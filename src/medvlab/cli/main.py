"""Entry point of the ``medvlab`` console script: builds the Typer app and turns errors into one line."""

from __future__ import annotations

import logging
import os
import sys

import typer

from medvlab import __version__
from medvlab.cli import ask, batch, doctor, evaluate, feedback, images, kb, report, seg, serve, train
from medvlab.cli.pacs import pacs_app
from medvlab.errors import MedvlabError

app = typer.Typer(
    name="medvlab",
    help="medvlab: an open medical vision lab. Research and teaching use only, never a diagnosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ask")(ask.ask)
app.command("serve")(serve.serve)
app.command("doctor")(doctor.doctor)
app.command("info")(images.info)
app.command("render")(images.render)
app.command("report")(report.report)
app.add_typer(kb.kb_app, name="kb")
app.add_typer(train.train_app, name="train")
app.add_typer(feedback.feedback_app, name="feedback")
app.add_typer(seg.seg_app, name="seg")
app.add_typer(pacs_app, name="pacs")
app.add_typer(batch.batch_app, name="batch")
app.command("eval")(evaluate.evaluate)


def _print_version(value: bool) -> None:
    """Eager: runs before Typer asks for a command, so ``medvlab --version`` alone works."""
    if value:
        typer.echo(f"medvlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs."),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Run the CLI; a MedvlabError becomes one line on stderr and exit code 2."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI shows its own status lines
    try:
        app()
    except MedvlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
