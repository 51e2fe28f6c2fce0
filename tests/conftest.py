"""Shared fixtures: real test files shipped by pydicom / pydicom-data / nibabel, and the tiny model."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from medvlab.config import Settings
from medvlab.services import Lab
from tests.helpers import dicom_test_files, serve_in_thread, sft_config, write_jsonl

# CI replays a fixed set of examples (reproducible runs); locally each run explores new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def dicom_files() -> dict[str, Path]:
    """Every .dcm file bundled with pydicom and pydicom-data, by file name."""
    return {p.name: p for p in dicom_test_files()}


@pytest.fixture(scope="session")
def nibabel_data() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private medvlab cache for the test session (the tiny model is built into it once)."""
    path = tmp_path_factory.mktemp("medvlab-cache")
    os.environ["MEDVLAB_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_dir(cache_dir: Path) -> Path:
    from medvlab.vlm.tiny import tiny_model_dir

    return tiny_model_dir(cache_dir)


@pytest.fixture(scope="session")
def lab(tiny_dir: Path, cache_dir: Path) -> Lab:
    """A lab serving the tiny model (loaded once for the whole session)."""
    return Lab(Settings(model="tiny", cache_dir=cache_dir, max_new_tokens=16, max_slices=8))


@pytest.fixture(scope="session")
def live_server(lab: Lab) -> Iterator[str]:
    """A real lab server (uvicorn in a thread, tiny model, web UI mounted) on a free loopback port."""
    from medvlab.server.app import create_app

    with serve_in_thread(create_app(lab), ready="model") as url:
        yield url


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory: pytest.TempPathFactory, dicom_files: dict[str, Path]) -> Path:
    """Small real training sets: pydicom's CT slice and a real chest X-ray, SFT and DPO records."""
    import shutil

    folder = tmp_path_factory.mktemp("train-data")
    shutil.copy(dicom_files["CT_small.dcm"], folder / "ct.dcm")
    shutil.copy(dicom_files["RG1_UNCI.dcm"], folder / "cxr.dcm")
    records = [
        {
            "messages": [
                {"role": "user", "content": "<image>Is there a pneumothorax?"},
                {"role": "assistant", "content": "No pneumothorax."},
            ],
            "images": ["cxr.dcm"],
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "哪个器官？"}]},
                {"role": "assistant", "content": "腹部CT轴位图像。"},
            ],
            "images": ["ct.dcm"],
        },
    ]
    write_jsonl(folder / "train.jsonl", records * 4)
    prefs = [
        {
            "prompt": "<image>Is there a pneumothorax?",
            "chosen": "No pneumothorax.",
            "rejected": "A large tension pneumothorax.",
            "images": ["cxr.dcm"],
        }
    ]
    write_jsonl(folder / "prefs.jsonl", prefs * 4)
    return folder


@pytest.fixture(scope="session")
def sft_adapter(
    train_dir: Path, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, tiny_dir: Path
) -> Path:
    """A LoRA adapter trained for a few steps on ``train_dir`` (shared by merge, eval and API tests)."""
    from medvlab.train.sft import run_sft

    return run_sft(sft_config(train_dir, tmp_path_factory.mktemp("sft-run")), cache_dir)


@pytest.fixture(scope="session")
def brain_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MNI152 train pair, Colin27 test pair and Colin27 as a DICOM series (written once)."""
    from medvlab.seg.sample import MRICRON_DIR, write_sample_data

    if not (MRICRON_DIR / "ch2.nii.gz").exists():
        pytest.skip("Colin27 is missing: apt-get install mricron-data")
    return write_sample_data(tmp_path_factory.mktemp("brain"))


@pytest.fixture(scope="session")
def brain_seg_label(brain_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Colin27's BET mask as a DICOM SEG referencing the Colin27 DICOM series (as Slicer would export)."""
    from medvlab.imaging.io import load
    from medvlab.seg.model import LabelInfo, SegSpec
    from medvlab.seg.outputs import write_dicom_seg

    series = load(brain_data["test_dicom"])
    mask = (load(brain_data["test_label"]).pixels > 0).astype("uint8")  # same grid as the series
    spec = SegSpec(labels=[LabelInfo("brain")])
    return write_dicom_seg(
        mask, series, brain_data["test_dicom"], spec, tmp_path_factory.mktemp("seg") / "bet.dcm"
    )
