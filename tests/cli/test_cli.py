"""The medvlab command line, run as a real process and in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from medvlab.cli.main import app
from medvlab.vlm.prompting import DISCLAIMERS

runner = CliRunner()


def medvlab(*args: str, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("medvlab") or str(Path(sys.executable).parent / "medvlab")
    env = {**os.environ, "MEDVLAB_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)


def test_ask_streams_to_stdout(tiny_dir: Path, cache_dir: Path, dicom_files: dict[str, Path]) -> None:
    out = medvlab(
        "ask",
        str(dicom_files["CT_small.dcm"]),
        "What organ is shown?",
        "--model",
        "tiny",
        "--max-new-tokens",
        "8",
        "--window",
        "abdomen",
        cache_dir=cache_dir,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(DISCLAIMERS["en"])


def test_ask_in_chinese_on_a_series(
    tiny_dir: Path, cache_dir: Path, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    from tests.helpers import write_series

    write_series(dicom_files["CT_small.dcm"], tmp_path / "s", n=5)
    result = runner.invoke(
        app, ["ask", str(tmp_path / "s"), "有异常吗？", "--model", "tiny", "--max-new-tokens", "6"]
    )
    assert result.exit_code == 0, result.output
    assert DISCLAIMERS["zh"] in result.stdout


def test_bad_file_is_one_line_and_nonzero(cache_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    out = medvlab("ask", str(bad), "q", "--model", "tiny", cache_dir=cache_dir)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'notes.txt' is not a recognised medical image")


def test_unavailable_device_is_a_clear_error(cache_dir: Path, dicom_files: dict[str, Path]) -> None:
    out = medvlab(
        "ask",
        str(dicom_files["CT_small.dcm"]),
        "q",
        "--model",
        "tiny",
        "--device",
        "npu",
        cache_dir=cache_dir,
    )
    assert out.returncode == 2 and "npu" in out.stderr and "not available" in out.stderr


def test_doctor_json() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["selected"]["device"] == "cpu" and report["selected"]["dtype"] == "float32"


def test_info_and_render(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(dicom_files["693_UNCI.dcm"])])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["modality"] == "CT" and info["shape"] == [1, 512, 512] and info["window"] == [40.0, 100.0]
    png = tmp_path / "lung.png"
    result = runner.invoke(
        app, ["render", str(dicom_files["693_UNCI.dcm"]), "-o", str(png), "--window", "lung"]
    )
    assert result.exit_code == 0
    with Image.open(png) as im:
        assert im.size == (512, 512) and im.mode == "RGB"


@pytest.mark.parametrize("window", ["lugn", "40,-1"])
def test_bad_window_flag(dicom_files: dict[str, Path], tmp_path: Path, window: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medvlab.cli.main",
            "render",
            str(dicom_files["CT_small.dcm"]),
            "-o",
            str(tmp_path / "x.png"),
            "--window",
            window,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.startswith("error:") and "Fix:" in out.stderr


def test_kb_add_and_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVLAB_KB_URL", f"sqlite:///{tmp_path / 'kb.sqlite'}")
    data = Path(__file__).parents[1] / "data" / "reports"
    result = runner.invoke(app, ["kb", "add", str(data / "priors.json"), str(data / "lungs.csv")])
    assert result.exit_code == 0 and "added 6 snippet(s)" in result.stdout
    result = runner.invoke(app, ["kb", "search", "脑出血", "-k", "1", "--json"])
    assert json.loads(result.stdout)[0]["title"] == "急性脑出血"
    result = runner.invoke(app, ["kb", "add", str(data / "bad.json")])
    assert result.exit_code != 0


def test_ask_json_and_heatmap(
    tiny_dir: Path, cache_dir: Path, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    out = medvlab(
        "ask", str(dicom_files["CT_small.dcm"]), "Findings?", "--model", "tiny", "--json", cache_dir=cache_dir
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["confidence"] in ("low", "moderate", "high")
    png = tmp_path / "heat.png"
    result = runner.invoke(
        app,
        [
            "ask",
            str(dicom_files["emri_small.dcm"]),
            "Where?",
            "--model",
            "tiny",
            "--max-new-tokens",
            "6",
            "--max-slices",
            "3",
            "--heatmap",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(png) as im:
        assert im.size == (3 * 512, 512)  # three slices side by side


def test_report_command(tiny_dir: Path, dicom_files: dict[str, Path], tmp_path: Path) -> None:
    pdf, dcm = tmp_path / "r.pdf", tmp_path / "r.dcm"
    result = runner.invoke(
        app,
        [
            "report",
            str(dicom_files["CT_small.dcm"]),
            "有病灶吗？",
            "-o",
            str(pdf),
            "--dicom",
            str(dcm),
            "--model",
            "tiny",
            "--max-new-tokens",
            "6",
            "--heatmap",
        ],
    )
    assert result.exit_code == 0, result.output
    assert pdf.read_bytes().startswith(b"%PDF")
    import pydicom

    assert pydicom.dcmread(dcm).MIMETypeOfEncapsulatedDocument == "application/pdf"


def test_serve_lora_flags_are_checked_before_anything_starts(tmp_path: Path, cache_dir: Path) -> None:
    for bad, says in [
        ("cxr", "NAME=FOLDER"),
        (f"cxr={tmp_path}", "adapter_config.json"),
        ("a b=/x", "letters"),
    ]:
        out = medvlab("serve", "--model", "tiny", "--lora", bad, cache_dir=cache_dir)
        assert out.returncode == 2 and says in out.stderr, out.stderr
