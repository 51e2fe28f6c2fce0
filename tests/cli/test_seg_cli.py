"""``medvlab seg``: the faces over the segmentation library, in-process and as a real process."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
from typer.testing import CliRunner

from medvlab.cli.main import app
from tests.cli.test_cli import medvlab

runner = CliRunner()


def test_predict_a_dicom_series_writes_nifti_and_seg(
    brain_data: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    out = medvlab(
        "seg", "predict", str(brain_data["test_dicom"]), "-o", str(tmp_path), "--json", cache_dir=cache_dir
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert Path(data["nifti"]).exists() and Path(data["dicom_seg"]).exists()
    assert data["dicom_seg"].endswith("colin27_dicom_seg.dcm") and 1200 < data["volumes_ml"]["brain"] < 2300
    assert nib.load(data["nifti"]).shape == (181, 217, 181)  # type: ignore[attr-defined]


def test_eval_scores_the_shipped_model_on_colin27(brain_data: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "seg",
            "eval",
            "--images",
            str(brain_data["test_image"]),
            "--labels",
            str(brain_data["test_label"]),
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["brain"]["dice_mean"] >= 0.90 and summary["brain"]["hd95_mean_mm"] > 0
    assert "colin27_t1" in (tmp_path / "scores.csv").read_text()


def test_train_then_export_through_the_cli(tmp_path: Path) -> None:
    from tests.seg.conftest import write_sphere_case

    pairs = [write_sphere_case(tmp_path / "d", f"c{i}", seed=i) for i in range(2)]
    args = [
        "seg",
        "train",
        "--labels",
        str(tmp_path / "d" / "*_label.nii.gz"),
        "--output",
        str(tmp_path / "run"),
    ]
    args += [
        "--width",
        "4",
        "--patch",
        "32",
        "--epochs",
        "2",
        "--label-names",
        "sphere,box",
        "--spacing",
        "2",
    ]
    result = runner.invoke(
        app, ["seg", "train", "--images", str(pairs[0][0]), "--images", str(pairs[1][0]), *args[2:]]
    )
    assert result.exit_code == 0, result.output
    assert "best val Dice" in result.output and (tmp_path / "run" / "curves.png").exists()
    result = runner.invoke(
        app, ["seg", "export", "-m", str(tmp_path / "run"), "-o", str(tmp_path / "exp"), "--format", "onnx"]
    )
    assert result.exit_code == 0, result.output
    assert "onnx" in result.output and "ok" in result.output and (tmp_path / "exp" / "model.onnx").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, cache_dir: Path) -> None:
    out = medvlab("seg", "predict", str(tmp_path / "missing.nii.gz"), cache_dir=cache_dir)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "does not exist" in out.stderr
    out = medvlab("seg", "predict", str(tmp_path), "--model", "nope.pt", cache_dir=cache_dir)
    assert out.returncode == 2 and "built-in: brain-mask" in out.stderr
    out = medvlab("seg", "train", "--images", "a", "--labels", "b", "--net", "unett", cache_dir=cache_dir)
    assert out.returncode == 2 and "did you mean 'unet'" in out.stderr


def test_predict_several_studies_at_once(brain_data: dict[str, Path], tmp_path: Path) -> None:
    inputs = [str(brain_data["test_image"]), str(brain_data["train_image"])]
    result = runner.invoke(app, ["seg", "predict", *inputs, "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [Path(d["input"]).name for d in data] == ["colin27_t1.nii.gz", "mni152_t1.nii.gz"]
    assert (tmp_path / "colin27_t1_seg.nii.gz").exists() and (tmp_path / "mni152_t1_seg.nii.gz").exists()
    assert all(d["dicom_seg"] is None for d in data)  # NIfTI in: no SEG to reference
    result = runner.invoke(app, ["seg", "predict", *inputs, "--nifti", str(tmp_path / "x.nii.gz")])
    assert result.exit_code != 0 and "several inputs" in str(result.exception)


def test_eval_against_a_dicom_seg_reference(
    brain_data: dict[str, Path], brain_seg_label: Path, tmp_path: Path
) -> None:
    """Ground truth as a DICOM SEG (e.g. from 3D Slicer) over the DICOM series: the same score as NIfTI."""
    args = ["seg", "eval", "--images", str(brain_data["test_dicom"]), "--labels", str(brain_seg_label)]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    dice = json.loads((tmp_path / "a" / "summary.json").read_text())["brain"]["dice_mean"]
    assert dice >= 0.90
    # saved SEG predictions scored against the SEG reference, with the series to put both on its grid
    out = runner.invoke(app, ["seg", "predict", str(brain_data["test_dicom"]), "-o", str(tmp_path / "p")])
    assert out.exit_code == 0, out.output
    pred = tmp_path / "p" / "colin27_dicom_seg.dcm"
    result = runner.invoke(app, [*args, "--pred", str(pred), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "b" / "summary.json").read_text())["brain"]["dice_mean"]
    assert again == dice
