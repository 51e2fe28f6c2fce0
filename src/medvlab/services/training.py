"""Training from the lab (REST and the Train tab): one SFT / DPO / GRPO run at a time per lab, launched as a
separate ``medvlab train`` process, watched, stopped, resumed; base vs adapter VQA evaluation; a DPO round
from the clinicians' ratings.

* Options are checked by building the configuration dataclass (``SFTTrainConfig`` ...) and the run's
  preflight (output folder, data records, image paths) before anything is launched: a bad value is a 400
  naming the option, not a failed process.
* Every job lives in ``<data_dir>/runs/<job-id>``: ``config.yaml`` (what ``train KIND --config`` reads),
  ``data.jsonl`` (a copy of the records), ``train.log`` and ``output/`` (adapter, checkpoints, metrics).
* Data: a JSONL file under ``MEDVLAB_ALLOWED_PATHS`` or an upload. It is copied into the job folder with
  each image path made absolute (relative paths start at the original file), and every image must lie in
  an allowed folder or the lab's own data folder. An upload has no folder of its own, so its records must
  name images by absolute allowed paths.
* A user may not set ``model`` (the lab's model is trained), the data/output paths, or ``reward_plugins``
  (Python files the run would execute).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import typing
import weakref
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import yaml

from medvlab.errors import (
    ConfigError,
    ConflictError,
    DataError,
    InputRefusedError,
    NotFoundError,
    RequestError,
)
from medvlab.train.config import DPOTrainConfig, SFTTrainConfig, TrainConfig
from medvlab.train.data import read_jsonl
from medvlab.train.grpo_config import GrpoTrainConfig
from medvlab.train.jobs import Job, train_command

if TYPE_CHECKING:
    from medvlab.services.lab import Lab

KINDS: dict[str, type[TrainConfig]] = {"sft": SFTTrainConfig, "dpo": DPOTrainConfig, "grpo": GrpoTrainConfig}
FIXED = ("model", "data", "eval_data", "output_dir", "reward_plugins")
"""Fields a request may not set (see the module docstring)."""
CONFIG_NAME = "config.yaml"
STOP_GRACE_S = 10.0


class Jobs:
    """The current training job of one lab (at most one runs at a time)."""

    def __init__(self) -> None:
        self.current: Job | None = None
        self.lock = threading.Lock()


_LABS: weakref.WeakKeyDictionary[Lab, Jobs] = weakref.WeakKeyDictionary()


def stop_running(lab: Lab, grace_s: float = 5.0) -> None:
    """Stop the lab's running job (the server calls this as it shuts down: nothing would watch the run,
    and a new server would not know its folder is in use)."""
    job = jobs_of(lab).current
    if job is not None and job.running:
        job.stop(grace_s)


def jobs_of(lab: Lab) -> Jobs:
    """The lab's jobs; the first time, its newest job on disk (a restarted server shows the last run)."""
    jobs = _LABS.get(lab)
    if jobs is None:
        fresh = Jobs()
        fresh.current = _newest_on_disk(lab)
        jobs = _LABS.setdefault(lab, fresh)
    return jobs


def _newest_on_disk(lab: Lab) -> Job | None:
    root = runs_folder(lab.settings)
    if not root.is_dir():
        return None
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):  # ids start with the time
        job = Job.restore(folder, KINDS, CONFIG_NAME)
        if job is not None:
            return job
    return None


def data_folder(lab: Lab) -> Path:
    """The lab's own data folder (as the feedback store uses)."""
    return lab.settings.data_dir or lab.settings.cache_dir / "data"


def runs_folder(settings: Any) -> Path:
    """Where the lab's training jobs go: ``<data_dir>/runs`` (adapters there may be loaded into the chat)."""
    return Path(settings.data_dir or settings.cache_dir / "data") / "runs"


# -- the form ---------------------------------------------------------------------------------------
def form_fields(kind: str) -> list[tuple[str, Any, Any]]:
    """(name, type, default) of the options a user may set for ``kind``: numbers, text, switches, choices."""
    cls = _config_class(kind)
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if f.name in FIXED or f.default is MISSING:
            continue
        bare = _bare(hints[f.name])
        if bare is not None:
            out.append((f.name, bare, f.default))
    return out


def _bare(hint: Any) -> Any:
    """int / float / bool / str, a tuple of Literal choices, or None for types the form does not offer."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is Literal:
        return tuple(typing.get_args(hint))
    if args and len(args) == 1 and typing.get_origin(hint) is not list:
        return _bare(args[0])
    return hint if hint in (int, float, bool, str) else None


def _coerce(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = {name: typ for name, typ, _ in form_fields(kind)}
    known = {f.name for f in fields(_config_class(kind))}
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name in FIXED and name in known:
            raise InputRefusedError(f"The option '{name}' cannot be set from the lab.", "Leave it out.")
        if name not in known:
            raise ConfigError(
                f"Unknown {kind} option '{name}'.", f"Valid options: {', '.join(sorted(allowed))}."
            )
        typ = allowed.get(name, Any)
        if value is None or value == "":
            continue
        if name == "rewards":  # GRPO: reward NAME[=WEIGHT] texts, checked against the registry later
            names = value.split(",") if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(
                    "The option 'rewards' must be a list of NAME[=WEIGHT].", "E.g. correctness."
                )
            value = [n.strip() for n in names if n.strip()]
        elif name not in allowed:
            raise ConfigError(f"The option '{name}' cannot be set from the lab.", "Leave it out.")
        if typ is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        wrong = (typ is int and (not isinstance(value, int) or isinstance(value, bool))) or (
            typ is float and (not isinstance(value, int | float) or isinstance(value, bool))
        )
        if wrong or (typ is bool and not isinstance(value, bool)):
            raise ConfigError(f"The option '{name}' must be {typ.__name__}, got {value!r}.", "Fix its value.")
        out[name] = float(value) if typ is float else value
    return out


def _config_class(kind: str) -> type[TrainConfig]:
    if kind not in KINDS:
        raise RequestError(f"Unknown training kind '{kind}'.", f"Use one of {', '.join(KINDS)}.")
    return KINDS[kind]


def reward_names() -> list[str]:
    """The GRPO rewards a run may use (built in; plugins cannot be loaded from the lab)."""
    from medvlab.train.rewards.registry import REGISTRY

    return sorted(REGISTRY)


# -- data -------------------------------------------------------------------------------------------
def stage_data(lab: Lab, source: Path, target: Path, uploaded: bool) -> int:
    """Copy the JSONL records at ``source`` to ``target`` with absolute, allowed image paths; -> records."""
    roots = [Path(r).expanduser().resolve() for r in lab.settings.allowed_paths]
    roots.append(data_folder(lab).resolve())
    out = []
    for n, rec in read_jsonl(source):
        for key in ("images", "image"):
            if key in rec:
                names = [rec[key]] if isinstance(rec[key], str) else list(rec[key] or [])
                rec[key] = [str(_image(source, str(p), roots, uploaded, n)) for p in names]
                if key == "image":
                    rec[key] = rec[key][0] if rec[key] else None
        out.append(json.dumps(rec, ensure_ascii=False))
    if not out:
        raise DataError(f"The data file '{source.name}' holds no records.", "Send a JSONL file with records.")
    target.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(out)


def _image(source: Path, name: str, roots: list[Path], uploaded: bool, line: int) -> Path:
    where = f"{source.name} line {line}"
    if uploaded and not Path(name).is_absolute():
        raise DataError(
            f"{where}: the image '{name}' is a relative path, which an uploaded file cannot resolve.",
            "Name images by absolute paths under MEDVLAB_ALLOWED_PATHS, or pass the JSONL's path instead.",
        )
    path = (source.parent / name).resolve()
    if not any(path.is_relative_to(r) for r in roots):
        raise InputRefusedError(
            f"{where}: the image '{name}' is outside the allowed folders.",
            "Put training images under a folder named in MEDVLAB_ALLOWED_PATHS.",
        )
    if not path.is_file():
        raise DataError(f"{where}: the image '{name}' does not exist.", "Fix the path.")
    return path


# -- jobs -------------------------------------------------------------------------------------------
def start(
    lab: Lab, kind: str, data: str | Path, options: dict[str, Any] | None = None, uploaded: bool = False
) -> dict[str, Any]:
    """Launch ``medvlab train KIND`` on ``data`` (an allowed path, or an upload's temporary file)."""
    source = Path(data) if uploaded else lab.allowed_local_path(str(data))
    return _launch(lab, kind, options or {}, lambda target: stage_data(lab, source, target, uploaded))


def dpo_from_feedback(lab: Lab, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the rated answers as preference pairs into a job folder and launch ``train dpo`` on them."""

    def export(target: Path) -> int:
        count = lab.feedback_export_to(target, "dpo")
        if count == 0:
            raise RequestError(
                "The feedback store holds no preference pairs to train on.",
                "Rate answers in the Lab tab first: give a better answer, or rate one answer good and "
                "another to the same question bad.",
            )
        return count

    return _launch(lab, "dpo", options or {}, export)


def _launch(lab: Lab, kind: str, options: dict[str, Any], write_data: Any) -> dict[str, Any]:
    cls = _config_class(kind)
    values = _coerce(kind, options)
    jobs = jobs_of(lab)
    with jobs.lock:
        _refuse_if_running(jobs)
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        folder = runs_folder(lab.settings) / job_id
        folder.mkdir(parents=True)
        try:
            records = write_data(folder / "data.jsonl")
            cfg = cls(
                model=lab.settings.model, data=folder / "data.jsonl", output_dir=folder / "output", **values
            )
            _preflight(cfg, kind)
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = _job(lab, job_id, kind, folder, cfg)
        job.launch()
        jobs.current = job
    return {**status(lab), "records": records}


def _preflight(cfg: TrainConfig, kind: str) -> None:
    from medvlab.train.runs import preflight, prepare_output

    if kind == "grpo":
        from medvlab.train.grpo_config import GrpoTrainConfig
        from medvlab.train.rewards.registry import resolve_rewards

        resolve_rewards(cast(GrpoTrainConfig, cfg).rewards)  # at least one, each known
        prepare_output(cfg)  # GRPO records are checked by the run itself
    else:
        preflight(cfg, kind)


def _job(lab: Lab, job_id: str, kind: str, folder: Path, cfg: TrainConfig) -> Job:
    config = folder / CONFIG_NAME
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    config.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    env = {"MEDVLAB_CACHE_DIR": str(lab.settings.cache_dir), "PYTHONUNBUFFERED": "1"}
    return Job(job_id, kind, folder, cfg.output_dir, train_command(kind, config), env)


def _refuse_if_running(jobs: Jobs) -> None:
    job = jobs.current
    if job is not None and job.running:
        raise ConflictError(
            f"The training job {job.id} is still running; the lab runs one at a time.",
            "Wait for it to finish, or stop it (POST /v1/train/jobs/current/stop).",
        )


def current(lab: Lab) -> Job:
    job = jobs_of(lab).current
    if job is None:
        raise NotFoundError(
            "No training job has been started in this lab.", "Start one (POST /v1/train/jobs)."
        )
    return job


def status(lab: Lab, log_lines: int = 40) -> dict[str, Any]:
    """The current job: state, exit code, steps done of max, metrics rows, log tail, curves and adapter."""
    job = jobs_of(lab).current
    if job is None:
        return {"state": "none", "id": None}
    out = job.output_dir
    curves, adapter = out / "training_curves.png", out / "adapter"
    cfg = yaml.safe_load((job.folder / CONFIG_NAME).read_text(encoding="utf-8"))
    state = job.state
    return {
        "id": job.id,
        "kind": job.kind,
        "state": state,
        "exit_code": job.exit_code,
        "steps_done": job.steps_done(),
        "max_steps": cfg.get("max_steps"),
        "metrics": job.metrics(),
        "log_tail": job.log_tail(log_lines),
        "curves": str(curves) if curves.exists() else None,
        "adapter": str(adapter) if state == "finished" and adapter.is_dir() else None,
        "output_dir": str(out),
    }


def stop(lab: Lab, grace_s: float = STOP_GRACE_S) -> dict[str, Any]:
    job = current(lab)
    if not job.running:
        raise ConflictError(f"The training job {job.id} is not running ({job.state}).", "Nothing to stop.")
    job.stop(grace_s)
    return status(lab)


def resume(lab: Lab, max_steps: int) -> dict[str, Any]:
    """Run the current job again up to ``max_steps`` (from its last checkpoint, in the same folder)."""
    jobs = jobs_of(lab)
    with jobs.lock:
        job = current(lab)
        _refuse_if_running(jobs)
        path = job.folder / CONFIG_NAME
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
        values.update(max_steps=max_steps, overwrite=False, resume=True)
        cfg = KINDS[job.kind](**values)
        if max_steps <= job.steps_done():
            raise ConfigError(
                f"The job already did {job.steps_done()} steps; resuming to {max_steps} adds none.",
                "Ask for more steps than it did.",
            )
        _preflight(cfg, job.kind)  # e.g. a finished run with no checkpoint to continue from
        path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
        job.launch()
    return status(lab)


# -- evaluation -------------------------------------------------------------------------------------
def evaluate(
    lab: Lab, vqa: str | Path, adapter: str | None = None, uploaded: bool = False, max_new_tokens: int = 64
) -> dict[str, dict[str, Any]]:
    """Score the base model and the adapter (default: the current job's) on VQA records, in the lab's
    process (the model is already loaded); -> {"base": summary, "adapter": summary}."""
    from medvlab.train.evaluate import VQAItem, read_items
    from medvlab.train.evaluate import evaluate as score_all

    source = Path(vqa) if uploaded else lab.allowed_local_path(str(vqa))
    if adapter is None:
        adapter = status(lab).get("adapter")
        if adapter is None:
            raise RequestError(
                "There is no finished adapter to evaluate.", "Finish a training job, or name one."
            )
    roots = [Path(r).expanduser().resolve() for r in lab.settings.allowed_paths] + [
        data_folder(lab).resolve()
    ]
    items = read_items(source)
    for n, item in enumerate(items, start=1):
        _image(source, str(item.image), roots, uploaded, n)
    before = lab.adapter
    lab.set_adapter(adapter)  # checks the adapter folder is allowed before anything is scored
    tuned = lab.adapter

    def predictor(path: str | None) -> Any:
        def predict(item: VQAItem) -> str:
            if lab.adapter != path:
                lab.set_adapter(path)
            return lab.vqa_answer(item.image, item.question, item.closed, max_new_tokens)

        return predict

    out = runs_folder(lab.settings) / f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    try:
        return score_all(items, {"base": predictor(None), "adapter": predictor(tuned)}, out)
    finally:
        lab.set_adapter(before)
