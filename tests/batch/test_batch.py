"""Batch over many real studies: discovery, the local runner (bounded, resumable, a broken study is a row
and not the end), the segment and ask tasks through the lab, the CLI, and the same batch on Ray."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medvlab.batch import ResultsFile, Study, discover, run_local
from medvlab.config import Settings
from medvlab.errors import ConfigError
from medvlab.imaging.io import load
from medvlab.services.batch import RESULTS_NAME, BatchTask, run_batch
from medvlab.vlm.prompting import DISCLAIMERS


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(r["source"]).name: r for r in rows}


def test_discovery_finds_nifti_files_and_series_folders(studies_dir: Path) -> None:
    studies = discover([studies_dir])
    assert sorted(Path(s.source).name for s in studies) == [
        "anatomical.nii",
        "broken.nii.gz",
        "colin27.nii.gz",
        "colin27_dicom",
    ]
    # ids are stable (resume) and unique; naming a study twice runs it once
    assert [s.id for s in discover([studies_dir])] == [s.id for s in studies]
    assert len(discover([studies_dir, studies_dir / "anatomical.nii"])) == 4
    assert discover([studies_dir / "colin27_dicom"])[0] == Study.at(studies_dir / "colin27_dicom")
    with pytest.raises(ConfigError, match="does not exist"):
        discover([studies_dir / "missing"])
    (studies_dir.parent / "empty").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="No NIfTI files or DICOM series"):
        discover([studies_dir.parent / "empty"])


def test_runner_bounds_concurrency_and_keeps_going_after_a_failure(studies_dir: Path, tmp_path: Path) -> None:
    """Real loading work on four threads-at-most of two; the broken file is an error row."""
    running, peak, lock = 0, 0, threading.Lock()

    def work(study: Study) -> dict:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.2)
            return {"shape": list(load(Path(study.source)).pixels.shape)}
        finally:
            with lock:
                running -= 1

    results = ResultsFile(tmp_path / "r.jsonl")
    summary = run_local(discover([studies_dir]), lambda: work, results, workers=2)
    assert (summary.ok, summary.failed, peak) == (3, 1, 2)
    rows = by_name(results.rows())
    assert rows["broken.nii.gz"]["status"] == "error" and "Fix:" in rows["broken.nii.gz"]["error"]
    assert rows["colin27_dicom"]["shape"] == rows["colin27.nii.gz"]["shape"] == [181, 217, 181]
    with pytest.raises(ConfigError, match="at least 1"):
        run_local(discover([studies_dir]), lambda: work, results, workers=0)


@pytest.fixture(scope="module")
def segmented(studies_dir: Path, seg_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batch-seg")
    summary = run_batch(BatchTask("segment", seg_settings, out), [studies_dir], workers=2)
    assert (summary.ok, summary.failed, summary.skipped) == (3, 1, 0)
    return out


def test_segment_batch_rows_have_real_volumes_and_files(segmented: Path, studies_dir: Path) -> None:
    import highdicom as hd
    import pydicom

    rows = by_name(ResultsFile(segmented / RESULTS_NAME).rows())
    assert len(rows) == 4
    colin = rows["colin27.nii.gz"]
    assert colin["status"] == "ok" and 1700 < colin["volumes_ml"]["brain"] < 2200  # an adult brain
    # the same brain as a DICOM series measures the same, and gets a SEG and its TID 1500 SR
    series = rows["colin27_dicom"]
    assert series["volumes_ml"]["brain"] == pytest.approx(colin["volumes_ml"]["brain"], rel=0.01)
    sr = pydicom.dcmread(series["files"]["dicom_sr"])
    seg = hd.seg.segread(series["files"]["dicom_seg"])
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    from medvlab.imaging.structured_reports import sr_volumes

    assert sr_volumes(sr)["brain"] == pytest.approx(series["volumes_ml"]["brain"], abs=1e-3)
    mask = load(Path(colin["files"]["nifti"])).pixels
    spacing = np.prod(load(studies_dir / "colin27.nii.gz").spacing)
    assert (mask > 0).sum() * spacing / 1000 == pytest.approx(colin["volumes_ml"]["brain"], rel=1e-3)
    assert set(colin["timings_s"]) == {"load", "segment", "write"} and colin["seconds"] > 0
    assert rows["broken.nii.gz"]["status"] == "error"
    assert (
        rows["broken.nii.gz"]["error_type"] == "ImageLoadError" and "Fix:" in rows["broken.nii.gz"]["error"]
    )


def test_rerun_skips_done_studies_and_retries_failed_ones(
    segmented: Path, studies_dir: Path, seg_settings: Settings
) -> None:
    before = ResultsFile(segmented / RESULTS_NAME).rows()
    with (segmented / RESULTS_NAME).open("a") as f:
        f.write('{"study": "torn')  # what a killed run leaves
    seen: list[tuple[int, int]] = []
    summary = run_batch(
        BatchTask("segment", seg_settings, segmented),
        [studies_dir],
        on_start=lambda todo, skipped: seen.append((todo, skipped)),
    )
    assert seen == [(1, 3)] and (summary.skipped, summary.failed, summary.ok) == (3, 1, 0)
    after = ResultsFile(segmented / RESULTS_NAME).rows()
    assert after[: len(before)] == before and after[-1]["source"].endswith("broken.nii.gz")


def test_ask_batch_answers_every_study_with_the_tiny_model(
    tiny_dir: Path, cache_dir: Path, dicom_files: dict[str, Path], nibabel_data: Path, tmp_path: Path
) -> None:
    settings = Settings(model="tiny", cache_dir=cache_dir, max_new_tokens=6)
    task = BatchTask("ask", settings, tmp_path, question="What organ is shown?")
    summary = run_batch(task, [dicom_files["CT_small.dcm"], nibabel_data / "anatomical.nii"])
    rows = ResultsFile(tmp_path / RESULTS_NAME).rows()
    assert summary.ok == 2 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        assert row["answer"].strip() and DISCLAIMERS["en"] not in row["answer"]  # not repeated per row
        assert row["model"] == "tiny" and row["question"] == "What organ is shown?"
        assert row["timings_s"]["answer"] > 0
    with pytest.raises(ConfigError, match="needs a question"):
        BatchTask("ask", settings, tmp_path, question=" ")


def test_cli_batch_segment(studies_dir: Path, tmp_path: Path) -> None:
    from medvlab.cli.main import app

    args = ["batch", "segment", str(studies_dir / "anatomical.nii"), str(studies_dir / "broken.nii.gz")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "1 ok, 1 failed, 0 skipped of 2 studies" in result.output
    rows = [json.loads(line) for line in (tmp_path / RESULTS_NAME).read_text().splitlines()]
    assert {r["status"] for r in rows} == {"ok", "error"}
    bad = CliRunner().invoke(app, ["batch", "segment", str(tmp_path / "nope"), "-o", str(tmp_path)])
    assert bad.exit_code != 0 and "does not exist" in str(bad.exception or bad.output)


@pytest.mark.slow
def test_ray_local_two_workers_gives_the_same_rows(
    segmented: Path, studies_dir: Path, seg_settings: Settings, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    names = ("anatomical.nii", "colin27.nii.gz", "broken.nii.gz")  # the DICOM series runs locally only
    try:
        task = BatchTask("segment", seg_settings, tmp_path)
        summary = run_batch(task, [studies_dir / n for n in names], workers=2, ray="local")
    finally:
        ray.shutdown()
    assert (summary.ok, summary.failed) == (2, 1)
    local = by_name(ResultsFile(segmented / RESULTS_NAME).rows())
    remote = by_name(ResultsFile(tmp_path / RESULTS_NAME).rows())
    assert set(remote) == set(names)
    for name, row in remote.items():
        assert row["status"] == local[name]["status"]
        assert row.get("volumes_ml") == local[name].get("volumes_ml")
    assert len({r["worker"] for r in remote.values()}) == 2  # two actors, each with its model
