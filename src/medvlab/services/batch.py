"""The batch use case: segment or ask about many studies, locally or on Ray, one JSONL row per study.

:class:`BatchTask` is what travels to each worker (it pickles: settings and a few fields); called there, it
builds one :class:`~medvlab.services.lab.Lab` and loads the model once, then handles studies one by one
through the same services the CLI, API and UI use (``Lab.load_image``, ``Lab.segment``, ``Lab.chat``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medvlab.batch import ResultsFile, Study, discover, run_local
from medvlab.batch.runner import BatchSummary, OnRow
from medvlab.batch.studies import PACS_PREFIX, parse_pacs
from medvlab.config import Settings
from medvlab.errors import ConfigError
from medvlab.imaging import MedImage

RESULTS_NAME = "results.jsonl"


@dataclass(frozen=True)
class BatchTask:
    """One batch's task, sent to every worker."""

    kind: Literal["segment", "ask"]
    settings: Settings
    out_dir: Path
    """Per-study files go to ``out_dir/<study id>/`` (mask, DICOM SEG and measurement SR)."""
    question: str | None = None
    """The question of an ``ask`` batch."""
    seg_model: str | None = None
    """Segmentation model (built-in name or checkpoint); the settings' ``seg_model`` when None."""

    def __post_init__(self) -> None:
        if self.kind == "ask" and not (self.question or "").strip():
            raise ConfigError("An ask batch needs a question.", 'Pass --question "...".')

    def __call__(self) -> LabWork:
        return LabWork(self)


class LabWork:
    """A worker: one lab with its model loaded, handling one study per call."""

    def __init__(self, task: BatchTask) -> None:
        from medvlab.services.lab import Lab

        self.task = task
        self.lab = Lab(task.settings)
        self.seg_model = task.seg_model or task.settings.seg_model
        if task.kind == "segment":
            self.lab.segmenter.predictor(self.seg_model)  # load now: every study then finds it ready
        else:
            _ = self.lab.backend

    def __call__(self, study: Study) -> dict[str, Any]:
        return self.segment(study) if self.task.kind == "segment" else self.ask(study)

    @contextmanager
    def opened(self, study: Study) -> Iterator[tuple[MedImage, Path | list[Path]]]:
        """The study's image and its files: a local path, or a PACS series retrieved into a scratch
        folder for as long as the study is worked on (``services.pacs``)."""
        if study.source.startswith(PACS_PREFIX):
            from medvlab.services import pacs

            name, study_uid, series_uid = parse_pacs(study.source)
            with pacs.fetched(self.lab, name, study_uid, series_uid) as got:
                yield got.image, got.files
        else:
            yield self.lab.load_image(Path(study.source)), Path(study.source)

    def segment(self, study: Study) -> dict[str, Any]:
        from medvlab.seg.outputs import write_dicom_seg, write_measurement_sr, write_nifti

        t0 = time.perf_counter()
        with self.opened(study) as (image, source):
            t1 = time.perf_counter()
            seg = self.lab.segment(image, self.seg_model)
            t2 = time.perf_counter()
            folder = self.task.out_dir / study.id
            nifti_source = source if isinstance(source, Path) else None
            files = {"nifti": str(write_nifti(seg.labels, image, folder / "mask.nii.gz", nifti_source))}
            if image.source_format.startswith("dicom"):  # a SEG and its SR reference the source series
                name = Path(self.seg_model).stem
                seg_path = write_dicom_seg(seg.labels, image, source, seg.spec, folder / "seg.dcm", name)
                sr = write_measurement_sr(seg_path, image, source, seg.volumes_ml, folder / "sr.dcm", name)
                files.update(dicom_seg=str(seg_path), dicom_sr=str(sr))
            t3 = time.perf_counter()
        return {
            "task": "segment",
            "model": self.seg_model,
            "volumes_ml": seg.volumes_ml,
            "shape": list(image.pixels.shape),
            "files": files,
            "timings_s": {
                "load": round(t1 - t0, 3),
                "segment": round(t2 - t1, 3),
                "write": round(t3 - t2, 3),
            },
        }

    def ask(self, study: Study) -> dict[str, Any]:
        from medvlab.vlm.prompting import Turn, detect_language, strip_disclaimer

        question = self.task.question or ""
        t0 = time.perf_counter()
        with self.opened(study) as (image, _):
            t1 = time.perf_counter()
            turns = [Turn("user", question, [image])]
            answer = "".join(self.lab.chat(turns, self.lab.prompt_options(), self.lab.generation_options()))
            t2 = time.perf_counter()
        return {
            "task": "ask",
            "model": self.lab.model_id,
            "adapter": self.lab.adapter,
            "question": question,
            "answer": strip_disclaimer(answer),
            "language": detect_language(question),
            "timings_s": {"load": round(t1 - t0, 3), "answer": round(t2 - t1, 3)},
        }


def run_batch(
    task: BatchTask,
    sources: Sequence[str | Path],
    workers: int = 1,
    ray: str | None = None,
    on_start: Any = None,
    on_row: OnRow | None = None,
    gpus_per_worker: float = 0.0,
) -> BatchSummary:
    """Find the studies under ``sources`` and run ``task`` on those not yet ``ok`` in
    ``task.out_dir/results.jsonl``: in this process with ``workers`` threads, or on ``workers`` Ray actors
    when ``ray`` is an address or ``local``. ``on_start(todo, skipped)`` is called once the studies are
    known (a face sizes its progress bar with it)."""
    from medvlab.batch.runner import pending

    studies = discover(sources)
    results = ResultsFile(task.out_dir / RESULTS_NAME)
    if on_start is not None:
        todo, skipped = pending(studies, results)
        on_start(len(todo), skipped)
    if ray is None:
        return run_local(studies, task, results, workers, on_row)
    from medvlab.batch.ray_backend import run_ray

    return run_ray(studies, task, results, workers, ray, on_row, gpus_per_worker=gpus_per_worker)
