"""Helpers for tests: locating bundled data and writing small real DICOM series."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from medvlab.train.config import SFTTrainConfig


def dicom_test_files() -> list[Path]:
    """pydicom's own test files plus the pydicom-data package's, without any network access."""
    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for root in roots for p in root.glob("*.dcm"))


def write_series(
    src: Path, out: Path, n: int, spacing: float = 2.5, shuffle: bool = True, series_uid: str | None = None
) -> list[float]:
    """Write ``n`` slices of the real slice ``src`` as one series (positions along z, files shuffled).

    Slice k holds the source pixels plus 10*k (stored values), so tests can check the order.
    Returns the z positions in slice order.
    """
    base = pydicom.dcmread(src)
    uid = series_uid or generate_uid()
    z0 = float(base.ImagePositionPatient[2])
    order = np.random.default_rng(0).permutation(n) if shuffle else np.arange(n)
    out.mkdir(parents=True, exist_ok=True)
    zs = []
    for k in range(n):
        ds = base.copy()
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        z = z0 + k * spacing
        zs.append(z)
        ds.ImagePositionPatient = [base.ImagePositionPatient[0], base.ImagePositionPatient[1], z]
        ds.InstanceNumber = int(order[k]) + 1  # deliberately unrelated to position
        arr = base.pixel_array.astype(np.int32) + 10 * k
        ds.PixelData = arr.astype(base.pixel_array.dtype).tobytes()
        ds.save_as(out / f"IMG{int(order[k]):04d}.dcm")
    return zs


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def sft_config(train_dir: Path, out: Path, **kw: Any) -> SFTTrainConfig:
    """A few fast SFT steps on the tiny model."""
    base: dict[str, Any] = dict(
        model="tiny",
        data=train_dir / "train.jsonl",
        output_dir=out,
        max_steps=6,
        batch_size=2,
        grad_accum=1,
        learning_rate=5e-3,
        logging_steps=1,
        save_steps=3,
        warmup_ratio=0.0,
        lora_rank=8,
    )
    base.update(kw)
    return SFTTrainConfig(**base)


def wait_until_up(url: str, ready: str = "any", timeout: float = 120.0) -> None:
    """Poll ``url``/healthz until it answers (``ready="model"``: until the model is loaded)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{url}/healthz", timeout=2)
            if health.status_code == 200 and (ready == "any" or health.json()["status"] == "ok"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the lab server at {url} did not come up")


@contextlib.contextmanager
def serve_in_thread(app: Any, ready: str = "any") -> Iterator[str]:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread; yields its URL."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, ready=ready)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server_process(port: int, env: dict[str, str], *args: str) -> Any:
    """``medvlab serve --model tiny --port PORT ARGS`` as a child process (the real CLI, output discarded)."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "medvlab.cli.main",
        "serve",
        "--model",
        "tiny",
        "--port",
        str(port),
        *args,
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
