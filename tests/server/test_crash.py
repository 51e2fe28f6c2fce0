"""kill -9 mid-write: every acknowledged feedback survives and the database stays intact."""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from medvlab.config import Settings
from medvlab.services import Lab
from tests.helpers import free_port, start_server_process, wait_until_up


def test_kill_9_mid_write_loses_nothing_acknowledged(
    dicom_files: dict[str, Path], tmp_path: Path, cache_dir: Path, tiny_dir: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MEDVLAB_CACHE_DIR": str(cache_dir),
        "MEDVLAB_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    server = start_server_process(port, env, "--no-ui")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        image = (
            "data:application/dicom;base64,"
            + base64.b64encode(dicom_files["CT_small.dcm"].read_bytes()).decode()
        )
        acked: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(w: int) -> None:
            n = 0
            while not stop.is_set() and n < 200:
                body = {
                    "image": image,
                    "question": f"q{w}-{n}",
                    "answer": "a",
                    "rating": 1 if n % 2 else -1,
                    "better_answer": f"better {w}-{n}",
                }
                try:
                    r = httpx.post(f"{url}/v1/feedback", json=body, timeout=10)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(r.json()["id"])
                n += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        while len(acked) < 20:
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)  # in the middle of the writers' stream of requests
        server.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
    finally:
        if server.poll() is None:
            server.kill()
    db = tmp_path / "data" / "medvlab.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = Lab(Settings(model="tiny", data_dir=tmp_path / "data")).feedback
    stored = {r.id for r in store.rows()}
    assert set(acked) <= stored  # every write the server acknowledged is there
    assert len(stored) >= 20
    # the store keeps working after the crash
    from medvlab.store.feedback import FeedbackRecord

    store.add(FeedbackRecord("after", "crash", 1), [dicom_files["CT_small.dcm"]])
    assert store.count() == len(stored) + 1
