"""``medvlab eval --data vqa.jsonl``: VQA accuracy / F1 / recall, base and adapter side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from medvlab.cli import options


def evaluate(
    data: Path = typer.Option(..., "--data", help="VQA-RAD / SLAKE style records (JSONL or JSON list)."),
    output: Path = typer.Option(
        Path("runs/eval"), "--output-dir", "-o", help="predictions.csv + summary.json."
    ),
    images: Path | None = typer.Option(None, "--images", help="Folder the image names are relative to."),
    model: str | None = options.MODEL,
    adapter: str | None = options.ADAPTER,
    engine: str | None = options.ENGINE,
    engine_url: str | None = options.ENGINE_URL,
    engine_model: str | None = options.ENGINE_MODEL,
    engine_key_env: str | None = options.ENGINE_KEY_ENV,
    device: str | None = options.DEVICE,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Answer length cap."),
) -> None:
    """Score the model (and, with --adapter, the adapter too) on VQA questions."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from medvlab.config import settings_with
    from medvlab.services import Lab
    from medvlab.train.evaluate import VQAItem, evaluate, read_items

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
    items = read_items(data, images)

    def predictor(adapter_path: str | None):  # type: ignore[no-untyped-def]
        def predict(item: VQAItem) -> str:
            if lab.adapter != adapter_path:
                lab.set_adapter(adapter_path)
            return lab.vqa_answer(item.image, item.question, item.closed, max_new_tokens)

        return predict

    predictors = {"base": predictor(None)}
    if adapter:
        predictors["adapter"] = predictor(str(Path(adapter).resolve()))
    with Progress(transient=True) as bar:
        task = bar.add_task("Evaluating", total=len(items) * len(predictors))
        summary = evaluate(items, predictors, output, lambda done, total: bar.update(task, completed=done))
    table = Table(title=f"VQA on {data.name} ({len(items)} questions)")
    for col in ("model", "closed accuracy", "open F1", "open recall", "closed / open"):
        table.add_column(col)
    for label, s in summary.items():

        def fmt(v: float | None) -> str:
            return "—" if v is None else f"{v:.3f}"

        table.add_row(
            label,
            fmt(s["closed_accuracy"]),
            fmt(s["open_f1"]),
            fmt(s["open_recall"]),
            f"{s['n_closed']} / {s['n_open']}",
        )
    Console().print(table)
    typer.echo(f"per-question results: {output / 'predictions.csv'}; summary: {output / 'summary.json'}")
