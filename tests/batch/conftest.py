"""Batch fixtures: a folder of real studies (Colin27 as NIfTI and as a DICOM series, a small nibabel
NIfTI, one broken file) and the segment task over it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medvlab.config import Settings


@pytest.fixture(scope="session")
def studies_dir(
    tmp_path_factory: pytest.TempPathFactory, brain_data: dict[str, Path], nibabel_data: Path
) -> Path:
    folder = tmp_path_factory.mktemp("studies")
    shutil.copy(brain_data["test_image"], folder / "colin27.nii.gz")
    shutil.copytree(brain_data["test_dicom"], folder / "colin27_dicom")
    shutil.copy(nibabel_data / "anatomical.nii", folder / "anatomical.nii")
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip" * 50)
    return folder


@pytest.fixture(scope="session")
def seg_settings(cache_dir: Path) -> Settings:
    return Settings(cache_dir=cache_dir, device="cpu")
