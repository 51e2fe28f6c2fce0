"""Dice and HD95 against values worked out by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medvlab.errors import ConfigError
from medvlab.seg.evaluate import evaluate_files, score_case, write_scores


def test_scores_of_a_shifted_cube() -> None:
    truth = np.zeros((30, 30, 30), np.uint8)
    truth[5:15, 5:15, 5:15] = 1
    pred = np.roll(truth, 2, axis=2)  # shifted by 2 voxels along columns
    (s,) = score_case("c", pred, truth, (1.0, 1.0, 1.5), ["cube"])
    assert s.dice == pytest.approx(2 * 800 / 2000)  # overlap 10x10x8 of two 1000-voxel cubes
    assert s.hd95_mm == pytest.approx(3.0)  # 2 voxels x 1.5 mm
    assert s.pred_ml == s.true_ml == pytest.approx(1000 * 1.5 / 1000)  # 1000 voxels of 1.5 mm3


def test_files_are_scored_and_written(tmp_path: Path) -> None:
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[2:8, 2:8, 2:8] = 1
    truth[12:18, 12:18, 12:18] = 2
    for name, arr in {
        "pred/a.nii.gz": truth,
        "gt/a.nii.gz": truth,
        "pred/b.nii.gz": truth * (truth == 1),
        "gt/b.nii.gz": truth,
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / name))
    scores = evaluate_files([str(tmp_path / "pred")], [str(tmp_path / "gt")], ["one", "two"])
    assert [(s.case, s.label, s.dice) for s in scores] == [
        ("a", "one", 1.0),
        ("a", "two", 1.0),
        ("b", "one", 1.0),
        ("b", "two", 0.0),
    ]
    summary = write_scores(scores, tmp_path / "out")
    assert summary["two"]["dice_mean"] == 0.5 and summary["one"]["cases"] == 2
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    assert len(rows) == 4 and rows[3]["dice"] == "0.0"
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    with pytest.raises(ConfigError, match="2 prediction"):
        evaluate_files([str(tmp_path / "pred")], [str(tmp_path / "gt" / "a.nii.gz")], ["one"])
