"""Training jobs from the lab (services.training and /v1/train): a real ``medvlab train`` process on the tiny
model — finished with metrics and log, one at a time, stopped (process group gone), resumed, a DPO round
from feedback, base vs adapter evaluation, and the REST routes with their errors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medvlab.config import Settings
from medvlab.errors import ConfigError, ConflictError, DataError, InputRefusedError, RequestError
from medvlab.server.app import create_app
from medvlab.services import Lab, training

FAST = {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "logging_steps": 1, "save_steps": 1, "lora_rank": 4}


def wait_for(lab: Lab, done: Callable[[dict[str, Any]], bool], timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = training.status(lab)
        if done(st):
            return st
        time.sleep(0.5)
    raise AssertionError(f"timed out; last status {training.status(lab)}")


@pytest.fixture
def train_lab(train_dir: Path, tmp_path: Path, cache_dir: Path, tiny_dir: Path) -> Lab:
    settings = Settings(
        model="tiny",
        cache_dir=cache_dir,
        data_dir=tmp_path / "data",
        allowed_paths=[train_dir],
        max_new_tokens=4,
    )
    return Lab(settings)


def test_sft_job_runs_to_the_end_and_refuses_a_second(train_lab: Lab, train_dir: Path) -> None:
    st = training.start(train_lab, "sft", str(train_dir / "train.jsonl"), FAST)
    assert st["state"] == "running" and st["records"] == 8
    with pytest.raises(ConflictError, match="one at a time"):
        training.start(train_lab, "sft", str(train_dir / "train.jsonl"), FAST)
    st = wait_for(train_lab, lambda s: s["state"] != "running")
    assert st["state"] == "finished" and st["exit_code"] == 0, st["log_tail"]
    assert st["steps_done"] == 2 and [r["step"] for r in st["metrics"] if "loss" in r] == [1, 2]
    assert "loss" in st["log_tail"] or "train" in st["log_tail"]
    assert Path(st["curves"]).stat().st_size > 1000 and (Path(st["adapter"]) / "adapter_config.json").exists()
    assert Path(st["output_dir"]).is_relative_to(train_lab.settings.data_dir / "runs")  # type: ignore[operator]
    staged = [json.loads(x) for x in (Path(st["output_dir"]).parent / "data.jsonl").read_text().splitlines()]
    assert all(Path(p).is_absolute() and Path(p).exists() for r in staged for p in r["images"])

    # resume: the same run continues from its checkpoint to 3 steps
    with pytest.raises(ConfigError, match="adds none"):
        training.resume(train_lab, 2)
    training.resume(train_lab, 3)
    st = wait_for(train_lab, lambda s: s["state"] != "running")
    assert st["state"] == "finished" and st["steps_done"] == 3, st["log_tail"]
    later = training.status(Lab(train_lab.settings))  # the server restarted: the tab still shows the run
    assert {k: later[k] for k in ("id", "state", "steps_done", "adapter", "curves")} == {
        k: st[k] for k in ("id", "state", "steps_done", "adapter", "curves")
    }

    # the finished adapter is allowed into the chat (it lies in the lab's runs folder) and evaluated
    vqa = train_dir / "vqa.jsonl"
    vqa.write_text(
        json.dumps({"image": "cxr.dcm", "question": "Is there a pneumothorax?", "answer": "no"})
        + "\n"
        + json.dumps({"image": "ct.dcm", "question": "Which organ?", "answer": "abdomen"})
        + "\n"
    )
    summary = training.evaluate(train_lab, str(vqa))
    assert set(summary) == {"base", "adapter"} and summary["base"]["n_closed"] == 1
    assert summary["adapter"]["n_open"] == 1 and train_lab.adapter is None  # the adapter is switched back


def test_stop_kills_the_process_group(train_lab: Lab, train_dir: Path) -> None:
    training.start(train_lab, "sft", str(train_dir / "train.jsonl"), {**FAST, "max_steps": 100000})
    job = training.jobs_of(train_lab).current
    assert job is not None and job.process is not None
    pid = job.process.pid
    st = training.stop(train_lab, grace_s=5)
    assert st["state"] == "stopped" and st["exit_code"] is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process of the group is left
    with pytest.raises(ConflictError, match="not running"):
        training.stop(train_lab)


def test_bad_inputs_are_refused_before_launch(train_lab: Lab, train_dir: Path, tmp_path: Path) -> None:
    data = str(train_dir / "train.jsonl")
    with pytest.raises(ConfigError, match="max_steps|epochs"):
        training.start(train_lab, "sft", data, {"max_steps": 0, "epochs": 0})
    with pytest.raises(ConfigError, match="learning_rate"):
        training.start(train_lab, "sft", data, {"learning_rate": -1.0})
    with pytest.raises(ConfigError, match="must be int"):
        training.start(train_lab, "sft", data, {"max_steps": "many"})
    with pytest.raises(ConfigError, match="Unknown sft option"):
        training.start(train_lab, "sft", data, {"bogus": 1})
    with pytest.raises(InputRefusedError, match="cannot be set"):
        training.start(train_lab, "grpo", data, {"reward_plugins": ["/tmp/evil.py"]})
    with pytest.raises(InputRefusedError):
        training.start(train_lab, "sft", "/etc/passwd", FAST)
    with pytest.raises(ConfigError, match="No reward was chosen"):
        training.start(train_lab, "grpo", data, {**FAST, "num_generations": 2})
    with pytest.raises(ConfigError, match="cannot be set"):
        training.start(train_lab, "sft", data, {"modules_to_save": ["lm_head"]})
    upload = tmp_path / "upload.jsonl"
    upload.write_text((train_dir / "train.jsonl").read_text())
    with pytest.raises(DataError, match="relative path"):
        training.start(train_lab, "sft", upload, FAST, uploaded=True)
    assert not list((train_lab.settings.data_dir / "runs").iterdir())  # type: ignore[operator]
    assert training.status(train_lab)["state"] == "none"


def test_dpo_round_from_feedback(train_lab: Lab, dicom_files: dict[str, Path]) -> None:
    with pytest.raises(RequestError, match="no preference pairs"):
        training.dpo_from_feedback(train_lab, FAST)
    cxr = dicom_files["RG1_UNCI.dcm"]
    for _ in range(2):
        train_lab.record_feedback([cxr], "Any effusion?", "Large effusion.", -1, better_answer="No effusion.")
    st = training.dpo_from_feedback(train_lab, FAST)
    assert st["kind"] == "dpo" and st["records"] == 2 and st["state"] == "running"
    st = wait_for(train_lab, lambda s: s["state"] != "running")
    assert st["state"] == "finished" and st["steps_done"] == 2, st["log_tail"]


def test_training_routes(train_lab: Lab, train_dir: Path) -> None:
    with TestClient(create_app(train_lab, ui=False)) as tc:
        assert tc.get("/v1/train/jobs/current").json()["state"] == "none"
        assert tc.post("/v1/train/jobs/current/stop").status_code == 404
        bad = tc.post(
            "/v1/train/jobs",
            json={"kind": "sft", "data": str(train_dir / "train.jsonl"), "options": {"batch_size": 0}},
        )
        assert bad.status_code == 400 and "batch_size" in bad.json()["error"]["message"]
        assert tc.post("/v1/train/jobs", json={"kind": "sft", "data": "/etc/hosts"}).status_code == 403
        assert tc.post("/v1/train/dpo-from-feedback", json={"options": FAST}).status_code == 400
        body = {
            "kind": "sft",
            "data": str(train_dir / "train.jsonl"),
            "options": {**FAST, "max_steps": 100000},
        }
        assert tc.post("/v1/train/jobs", json=body).status_code == 200
        again = tc.post("/v1/train/jobs", json=body)
        assert again.status_code == 409 and "one at a time" in again.json()["error"]["message"]
        assert tc.get("/v1/train/jobs/current").json()["state"] == "running"
        stopped = tc.post("/v1/train/jobs/current/stop")
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
        assert tc.post("/v1/train/eval", json={"data": str(train_dir / "train.jsonl")}).status_code == 400


def test_training_routes_need_the_key(train_lab: Lab) -> None:
    lab = Lab(train_lab.settings.model_copy(update={"api_keys": ["k1"]}))
    # no model load in the background: it would still run while the next test loads a model (transformers'
    # loading is not safe across threads of one process)
    with TestClient(create_app(lab, ui=False, preload=False)) as tc:
        assert tc.get("/v1/train/jobs/current").status_code == 401
        ok = tc.get("/v1/train/jobs/current", headers={"Authorization": "Bearer k1"})
        assert ok.status_code == 200


def test_a_restarted_lab_shows_its_newest_job(train_lab: Lab, tmp_path: Path) -> None:
    """Job folders as an earlier server left them; only well-formed ones of a known kind count, and the
    command is rebuilt, never read back from job.json."""
    root = training.runs_folder(train_lab.settings)

    def job_folder(name: str, kind: str, finished: bool, **meta: Any) -> Path:
        folder = root / name
        (folder / "output").mkdir(parents=True)
        (folder / "config.yaml").write_text("max_steps: 7\n")
        (folder / "job.json").write_text(
            json.dumps({"id": name, "kind": kind, "command": ["rm", "-rf", "/"], **meta})
        )
        if finished:
            (folder / "output" / "run_summary.json").write_text(json.dumps({"global_step": 7}))
        return folder

    job_folder("20260101-000000-sft-aaaaaa", "sft", finished=True)
    job_folder("20260102-000000-dpo-bbbbbb", "dpo", finished=False, output_dir="/etc")
    job_folder("20260103-000000-rm-cccccc", "rm", finished=True)  # not a kind: skipped
    (root / "20260104-000000-sft-dddddd").mkdir()  # no job.json: skipped
    st = training.status(Lab(train_lab.settings))
    assert (st["id"], st["kind"], st["state"], st["max_steps"]) == (
        "20260102-000000-dpo-bbbbbb",
        "dpo",
        "stopped",
        7,
    )
    assert Path(st["output_dir"]) == root / "20260102-000000-dpo-bbbbbb" / "output"  # not /etc
    job = training.jobs_of(Lab(train_lab.settings)).current
    assert job is not None and job.command[-4:] == [
        "train",
        "dpo",
        "--config",
        str(job.folder / "config.yaml"),
    ]
    (root / "20260102-000000-dpo-bbbbbb" / "job.json").unlink()
    st = training.status(Lab(train_lab.settings))
    assert (st["id"], st["state"], st["steps_done"]) == ("20260101-000000-sft-aaaaaa", "finished", 7)
