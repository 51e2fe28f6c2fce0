"""Training: learning happens, curves and checkpoints are written, resume, AMP, DDP under torchrun."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medvlab.errors import ConfigError
from medvlab.seg.model import load_checkpoint
from medvlab.seg.train import train_segmentation
from tests.seg.conftest import sphere_config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_training_learns_and_writes_checkpoints_and_curves(sphere_model: Path) -> None:
    rows = _rows(sphere_model / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[-1]["train_loss"]) < 0.6 * float(rows[0]["train_loss"])
    assert float(rows[-1]["val_dice_sphere"]) > 0.8  # held-out case (4 cases: 3 train, 1 validation)
    assert float(rows[-1]["crops_per_s"]) > 0
    best = load_checkpoint(sphere_model / "best.pt")
    assert best.metrics["val_dice"] == max(float(r["val_dice"]) for r in rows)
    assert [label.name for label in best.spec.labels] == ["sphere", "box"]
    assert best.spec.spacing == (2.0, 2.0, 2.0)  # median spacing of the training images
    assert (sphere_model / "curves.png").stat().st_size > 5_000


def test_resume_continues_where_it_stopped(sphere_cases: dict[str, list[Path]], tmp_path: Path) -> None:
    train_segmentation(sphere_config(sphere_cases, tmp_path, epochs=2))
    first = _rows(tmp_path / "metrics.csv")
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and "optimizer" in state
    result = train_segmentation(sphere_config(sphere_cases, tmp_path, epochs=4, resume=True))
    rows = _rows(tmp_path / "metrics.csv")
    assert result.epochs_run == 2
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert rows[:2] == first  # the earlier epochs are kept, not retrained
    # the cosine schedule follows the new length: after epoch 3 of 4, lr = 5e-3 * (1 + cos(3/4 pi)) / 2
    assert float(rows[2]["lr"]) == pytest.approx(5e-3 * (1 + math.cos(0.75 * math.pi)) / 2)
    with pytest.raises(ConfigError, match="other settings"):
        train_segmentation(sphere_config(sphere_cases, tmp_path, epochs=5, width=8, resume=True))


def test_amp_training_runs_on_cpu_in_bfloat16(sphere_cases: dict[str, list[Path]], tmp_path: Path) -> None:
    result = train_segmentation(sphere_config(sphere_cases, tmp_path, epochs=1, amp=True))
    assert result.rows[0]["train_loss"] == result.rows[0]["train_loss"]  # not NaN
    assert (tmp_path / "best.pt").exists()


def test_ddp_under_torchrun_with_two_processes(sphere_cases: dict[str, list[Path]], tmp_path: Path) -> None:
    """The same training command under torchrun: two CPU ranks (Gloo), rank 0 writes the outputs."""
    src = Path(__file__).resolve().parents[2] / "src"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\n"
        "from medvlab.seg.train import SegTrainConfig, train_segmentation\n"
        f"cfg = SegTrainConfig(images={[str(p) for p in sphere_cases['images']]!r}, "
        f"labels={[str(p) for p in sphere_cases['labels']]!r}, output_dir=Path(sys.argv[1]), "
        "width=4, patch=32, label_names=['sphere', 'box'], epochs=2, steps_per_epoch=4, augment=False)\n"
        "r = train_segmentation(cfg)\nprint('RESULT', r.best_dice)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path / "out"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("RESULT") == 2  # both ranks finished
    rows = _rows(tmp_path / "out" / "metrics.csv")
    assert len(rows) == 2 and "val_dice" in rows[-1]
    assert (tmp_path / "out" / "best.pt").exists()


def test_bad_settings_are_refused(sphere_cases: dict[str, list[Path]], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        train_segmentation(sphere_config(sphere_cases, tmp_path, epochs=0))


def test_training_on_a_dicom_series_with_a_dicom_seg_label(
    brain_data: dict[str, Path], brain_seg_label: Path, tmp_path: Path
) -> None:
    from medvlab.seg.train import SegTrainConfig

    cfg = SegTrainConfig(
        images=[str(brain_data["test_dicom"])],
        labels=[str(brain_seg_label)],
        output_dir=tmp_path,
        width=4,
        patch=32,
        spacing=(4.0, 4.0, 4.0),
        epochs=2,
        steps_per_epoch=2,
        augment=False,
    )
    result = train_segmentation(cfg)
    best = load_checkpoint(tmp_path / "best.pt")
    assert [label.name for label in best.spec.labels] == ["label_1"]  # segment 1 of the SEG
    assert result.rows[-1]["val_dice"] > 0
