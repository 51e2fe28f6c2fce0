"""``medvlab seg``: train, predict, evaluate and export 3-D segmentation models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from medvlab.cli import options
from medvlab.cli.dataclass_options import DataclassOptions, Flag
from medvlab.seg.config import SegTrainConfig

seg_app = typer.Typer(
    help="3-D segmentation (MONAI networks): train, predict, eval, export.", no_args_is_help=True
)

MODEL = typer.Option(
    "brain-mask", "--model", "-m", help="Checkpoint (best.pt or its folder) or a built-in: brain-mask."
)


def _floats(text: str, what: str) -> tuple[float, float, float]:
    """One number (all three axes) or three, comma separated: ``2`` or ``1.5,1.5,2``."""
    from medvlab.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"{what} '{text}' is not a number or three numbers.", "Use e.g. 2 or 1.5,1.5,2."
        ) from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) <= 0:
        raise ConfigError(
            f"{what} '{text}' must be one or three positive numbers.", "Use e.g. 2 or 1.5,1.5,2."
        )
    return (values[0], values[1], values[2])


def _names(text: str) -> list[str] | None:
    return [n.strip() for n in text.split(",")] if text else None


TRAIN = DataclassOptions(
    SegTrainConfig,
    {
        "output_dir": Flag(("--output", "-o")),
        "patch": Flag(cli_type=int),
        "spacing": Flag(cli_type=str, parse=lambda text: _floats(text, "--spacing")),
        "label_names": Flag(cli_type=str, parse=_names),
        "num_samples": Flag(("--samples",)),
        "device": Flag(("--device", "-d")),
    },
    skip=("weight_decay", "augment"),  # Python-only knobs
    negatable=False,  # --binarize, --amp, --resume, ... are switches (no --no-x)
)
"""``seg train``'s options, generated from :class:`SegTrainConfig` (one per field, docstring as help)."""


@seg_app.command("sample-data")
def sample_data(
    output: Path = typer.Argument(Path("data/brain"), help="Folder to write train/ and test/ into."),
    dicom: bool = typer.Option(True, "--dicom/--no-dicom", help="Also write Colin27 as a DICOM series."),
) -> None:
    """Write real brain MRI to try segmentation on: MNI152 (train) and Colin27 (test), with masks."""
    from medvlab.seg.sample import write_sample_data

    for role, path in write_sample_data(output, dicom=dicom).items():
        typer.echo(f"{role:12s} {path}")


@seg_app.command("train")
@TRAIN.command
def train(flags: dict[str, Any]) -> None:
    """Train a MONAI network. Multi-GPU / multi-node: run the same command under torchrun."""
    from rich.progress import Progress

    from medvlab.seg.train import train_segmentation

    cfg = TRAIN.build(flags)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    with Progress(disable=not main_rank) as bar:
        task = bar.add_task("Training", total=cfg.epochs)

        def on_epoch(epoch: int, total: int, row: dict[str, float]) -> None:
            dice = f" val Dice {row['val_dice']:.4f}" if "val_dice" in row else ""
            bar.update(
                task, completed=epoch, description=f"epoch {epoch}/{total} loss {row['train_loss']:.4f}{dice}"
            )

        result = train_segmentation(cfg, on_epoch)
    if not main_rank:
        return
    out = cfg.output_dir
    typer.echo(
        f"best val Dice {result.best_dice:.4f} (epoch {result.best_epoch}); "
        f"wrote {out / 'best.pt'}, {out / 'metrics.csv'}, {out / 'curves.png'}"
    )


@seg_app.command("predict")
def predict(
    images: list[Path] = typer.Argument(..., help="DICOM series folders, DICOM files or NIfTI files."),
    model: str = MODEL,
    output: Path = typer.Option(Path("."), "--output", "-o", help="Folder for <name>_seg.nii.gz (+ .dcm)."),
    nifti: Path | None = typer.Option(None, "--nifti", help="NIfTI mask path (one input; default: in -o)."),
    dicom_seg: Path | None = typer.Option(None, "--dicom-seg", help="DICOM SEG path (one DICOM input)."),
    device: str | None = options.DEVICE,
    overlap: float = typer.Option(0.5, "--overlap", help="Sliding-window overlap, 0-0.9."),
    amp: bool = typer.Option(False, "--amp", help="bf16/fp16 autocast."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (one object per input)."),
    preview: bool = typer.Option(
        False, "--preview", help="Also write <name>_preview.png: axial/coronal/sagittal with the mask."
    ),
    statistics: bool = typer.Option(
        True, "--statistics/--no-statistics", help="Write <name>_statistics.json (volume, intensity, ...)."
    ),
) -> None:
    """Segment volumes: NIfTI mask on each input's grid, DICOM SEG + measurement SR for DICOM input,
    per-structure statistics (<name>_statistics.json: voxels, mL, intensity, centroid, bounding box) and
    with --preview a three-plane picture."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from medvlab.devices import resolve_device
    from medvlab.errors import ConfigError
    from medvlab.seg.infer import InferenceOptions, Predictor
    from medvlab.seg.statistics import table_rows
    from medvlab.seg.study import StudyResult, default_extras, default_outputs, segment_study, sr_path

    if not 0 <= overlap < 1:
        raise ConfigError(f"--overlap {overlap} is outside 0-0.9.", "Use e.g. --overlap 0.5.")
    if len(images) > 1 and (nifti or dicom_seg):
        raise ConfigError(
            "--nifti and --dicom-seg name one file, but several inputs were given.",
            "Use --output DIR for several inputs (each gets <name>_seg.nii.gz / .dcm).",
        )
    dev = resolve_device(device, dtype="float32").torch_device
    predictor = Predictor.load(model, dev, InferenceOptions(overlap=overlap, amp=amp))
    results: list[tuple[Path, StudyResult]] = []
    with Progress(transient=True) as bar:
        studies = bar.add_task("Segmenting", total=len(images))
        reading = bar.add_task("Reading", total=None)
        for image in images:
            default_nifti, default_seg = default_outputs(image, output)
            stats_path, preview_path = default_extras(image, (nifti or default_nifti).parent)
            bar.update(reading, completed=0, total=None, description=f"Reading {image.name}")

            def progress(done: int, total: int) -> None:
                bar.update(reading, completed=done, total=total)

            def windows(done: int, total: int) -> None:
                bar.update(reading, completed=done, total=total, description="Segmenting")

            result = segment_study(
                image,
                predictor,
                nifti or default_nifti,
                dicom_seg or default_seg,
                Path(model).stem,
                progress,
                windows,
                dicom_sr=sr_path(dicom_seg or default_seg),
                statistics=stats_path if statistics else None,
                preview=preview_path if preview else None,
            )
            results.append((image, result))
            bar.advance(studies)
    if as_json:
        payload = [{"input": str(image), **r.summary()} for image, r in results]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    table = Table(title="Structures (research use only, not a diagnosis)")
    heads = ("input", "structure", "voxels", "volume (mL)", "mean", "std", "min", "max", "centroid (mm, RAS)")
    for col in heads:
        table.add_column(col, justify="left" if col in ("input", "structure") else "right")
    for image, result in results:
        for row in table_rows((result.statistics or {})["structures"]):
            table.add_row(image.name, *(str(v) for v in row))
        typer.echo(f"{image.name}: {result.timings['total']:.2f} s")
    Console().print(table)
    for _, result in results:
        for path in (result.nifti, result.dicom_seg, result.dicom_sr, result.statistics_path, result.preview):
            if path:
                typer.echo(f"wrote {path}")


@seg_app.command("eval")
def evaluate(
    labels: list[str] = typer.Option(..., "--labels", help="Ground-truth label files/folders/globs."),
    pred: list[str] = typer.Option(
        [], "--pred", help="Saved predictions (paired with labels by sorted name)."
    ),
    images: list[str] = typer.Option(
        [], "--images", help="Images to predict with --model instead of --pred."
    ),
    model: str = MODEL,
    binarize: bool = typer.Option(
        False, "--binarize", help="Ground truth: every non-zero voxel is foreground."
    ),
    output: Path = typer.Option(
        Path("runs/seg-eval"), "--output", "-o", help="Folder for scores.csv, summary.json."
    ),
    device: str | None = options.DEVICE,
) -> None:
    """Dice and HD95 per case and structure, as CSV plus a summary."""
    from rich.console import Console
    from rich.table import Table

    from medvlab.devices import resolve_device
    from medvlab.errors import ConfigError
    from medvlab.seg.evaluate import evaluate_files, evaluate_model, write_scores
    from medvlab.seg.infer import Predictor
    from medvlab.seg.model import load_checkpoint

    if not pred and not images:
        raise ConfigError(
            "Nothing to score.",
            "Pass --pred (saved masks) or --images (predicted with --model); with --pred, --images names "
            "the DICOM series that DICOM SEG files refer to.",
        )
    ckpt = load_checkpoint(model)
    names = [label.name for label in ckpt.spec.labels]
    if pred:
        scores = evaluate_files(pred, labels, names, binarize, images)
    else:
        predictor = Predictor(ckpt, resolve_device(device, dtype="float32").torch_device)
        scores = evaluate_model(
            lambda image: predictor.predict(image).labels, images, labels, names, binarize
        )
    summary = write_scores(scores, output)
    table = Table(title="Segmentation scores")
    for col in ("case", "structure", "Dice", "HD95 (mm)", "pred mL", "true mL"):
        table.add_column(col)
    for s in scores:
        table.add_row(
            s.case, s.label, f"{s.dice:.4f}", f"{s.hd95_mm:.2f}", f"{s.pred_ml:.1f}", f"{s.true_ml:.1f}"
        )
    Console().print(table)
    for name, stats in summary.items():
        typer.echo(f"{name}: mean Dice {stats['dice_mean']:.4f}, mean HD95 {stats['hd95_mean_mm']:.2f} mm")
    typer.echo(f"wrote {output / 'scores.csv'}, {output / 'summary.json'}")


@seg_app.command("export")
def export(
    model: str = MODEL,
    output: Path = typer.Option(
        Path("runs/seg-export"), "--output", "-o", help="Folder for the exported files."
    ),
    formats: str = typer.Option(
        "torchscript,onnx", "--format", help="torchscript, onnx, compile, tensorrt (comma list)."
    ),
    tolerance: float = typer.Option(
        1e-3, "--tolerance", help="Largest allowed |export - eager| on the check input."
    ),
) -> None:
    """Export to TorchScript / ONNX (TensorRT, torch.compile when available), checked against eager."""
    from medvlab.errors import ExportError
    from medvlab.seg.export import export_model

    results = export_model(model, output, [f.strip() for f in formats.split(",") if f.strip()], tolerance)
    for r in results:
        if r.ok is None:
            typer.echo(f"{r.format:12s} {r.note}")
        else:
            state = "ok" if r.ok else "MISMATCH"
            typer.echo(f"{r.format:12s} {state}  max |diff| {r.max_abs_diff:.2e}  {r.path or ''}")
    bad = [r.format for r in results if r.ok is False]
    if bad:
        raise ExportError(
            f"{', '.join(bad)} output differs from the eager model by more than {tolerance}.",
            "Raise --tolerance if that is expected (e.g. reduced precision), or report the model.",
        )
    typer.echo(f"wrote {output / 'export.json'}")
