"""Small things a new user meets first: ``--version``, and ``render`` counting slices as its help says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from medvlab import __version__
from medvlab.cli.main import app
from medvlab.imaging import load, render_slice

runner = CliRunner()


def test_version_alone_prints_it_and_exits_0() -> None:
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.strip() == f"medvlab {__version__}"


def test_render_slice_numbers_agree_between_help_option_and_output(
    dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    help_text = " ".join(runner.invoke(app, ["render", "--help"]).stdout.split())
    assert "Slice number from 1" in help_text
    source = dicom_files["emri_small.dcm"]  # 10 frames
    png = tmp_path / "s3.png"
    out = runner.invoke(app, ["render", str(source), "-o", str(png), "--slice", "3"])
    assert out.exit_code == 0 and "slice 3/10" in out.stdout
    expected = render_slice(load(source), 2)  # slice 3 is the third frame, 0-based index 2
    np.testing.assert_array_equal(np.asarray(Image.open(png)), expected)
    last = runner.invoke(app, ["render", str(source), "-o", str(png), "--slice", "10"])
    assert last.exit_code == 0 and "slice 10/10" in last.stdout
    past = runner.invoke(app, ["render", str(source), "-o", str(png), "--slice", "11"])
    assert past.exit_code != 0
    zero = runner.invoke(app, ["render", str(source), "-o", str(png), "--slice", "0"])
    assert zero.exit_code != 0


def test_render_and_info_of_a_4d_nifti_need_a_volume(tmp_path: Path) -> None:
    import nibabel as nib

    data = np.random.default_rng(0).integers(0, 1000, (12, 10, 6, 3)).astype(np.int16)
    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    refused = runner.invoke(app, ["info", str(path)])
    assert refused.exit_code != 0
    picked = runner.invoke(app, ["info", str(path), "--volume", "2"])
    assert picked.exit_code == 0 and '"nifti_volume": 2' in picked.stdout
    png = tmp_path / "v1.png"
    out = runner.invoke(app, ["render", str(path), "-o", str(png), "--volume", "1", "--slice", "6"])
    assert out.exit_code == 0 and "slice 6/6" in out.stdout and png.exists()
