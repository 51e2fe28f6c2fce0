"""Batch throughput: studies per minute for one process vs Ray with 2 workers, measured in the same run.

Data: ``--studies`` copies of a real brain MRI (Colin27, Debian's mricron-data), each a study of its own
(181x217x181 voxels, 1 mm), segmented by the brain model medvlab ships, through the same code path as
``medvlab batch segment`` (``services.batch.run_batch``). Both runs start cold (model loading, and for Ray
starting the local instance and its actors, count), and the per-study seconds inside the workers are
reported too, so the steady-state rate and the start-up cost can be told apart.

    python benchmarks/batch_bench.py [--studies 8] [--workers 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from medvlab.config import Settings
from medvlab.seg.sample import colin27_paths
from medvlab.services.batch import RESULTS_NAME, BatchTask, run_batch

logger = logging.getLogger("batch_bench")


def make_studies(folder: Path, n: int) -> Path:
    t1, _ = colin27_paths()
    studies = folder / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy(t1, studies / f"colin27_{i:03d}.nii.gz")
    return studies


def run(label: str, studies: Path, out: Path, workers: int, ray: str | None) -> dict[str, float]:
    task = BatchTask("segment", Settings(device="cpu"), out)
    t0 = time.perf_counter()
    summary = run_batch(task, [studies], workers=workers, ray=ray)
    wall = time.perf_counter() - t0
    assert summary.failed == 0, [r.get("error") for r in summary.rows if r["status"] != "ok"]
    per_study = statistics.median(float(r["seconds"]) for r in summary.rows)
    result = {
        "wall_s": wall,
        "studies_per_min": 60.0 * summary.ok / wall,
        "per_study_s": per_study,
        "volumes": sorted({r["volumes_ml"]["brain"] for r in summary.rows}),  # type: ignore[dict-item]
    }
    print(
        f"{label:<24} {summary.ok} studies in {wall:6.1f} s = {result['studies_per_min']:5.2f} studies/min "
        f"(median {per_study:.2f} s per study inside a worker)"
    )
    assert (out / RESULTS_NAME).exists()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        studies = make_studies(work, args.studies)
        print(f"{args.studies} studies (Colin27 T1, 181x217x181), brain-mask model, {os.cpu_count()} CPUs")
        single = run("1 process", studies, work / "local", 1, None)
        many = run(f"Ray, {args.workers} workers", studies, work / "ray", args.workers, "local")
        assert single["volumes"] == many["volumes"], "Ray and the local run measured different volumes"
        ratio = many["studies_per_min"] / single["studies_per_min"]
        print(
            f"Ray {args.workers} workers / 1 process: {ratio:.2f}x studies/min; per study inside a worker "
            f"{many['per_study_s']:.2f} s vs {single['per_study_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
