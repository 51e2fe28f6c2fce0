"""A real PACS for the PACS tests: Debian's Orthanc with its DICOMweb plugin on a free loopback port, a
temporary storage folder and HTTP basic auth, started once per session and stopped after. It is loaded with
real studies: pydicom-data's CT and MR slices, a chest X-ray, and Colin27 written as an MR series."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from medvlab.config import Settings
from medvlab.imaging.types import MedImage
from tests.helpers import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ACCESSION = "A20040826"
USER_ENV, PASSWORD_ENV = "MEDVLAB_TEST_PACS_USER", "MEDVLAB_TEST_PACS_PASSWORD"


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its DICOMweb root and the REST API the tests use to look behind the lab's back."""

    port: int
    user: str
    password: str

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.root}/dicom-web"

    def rest(self) -> httpx.Client:
        return httpx.Client(base_url=self.root, auth=(self.user, self.password), timeout=30)

    def upload(self, path: Path) -> dict[str, str]:
        with self.rest() as http:
            answer = http.post("/instances", content=path.read_bytes())
            answer.raise_for_status()
            return dict(answer.json())

    def endpoint(self, **extra: str) -> dict[str, str]:
        return {"url": self.dicomweb, "user_env": USER_ENV, "password_env": PASSWORD_ENV, **extra}

    def settings(self, **overrides: object) -> Settings:
        base: dict[str, object] = {
            "model": "tiny",
            "max_new_tokens": 8,
            "max_slices": 4,
            "pacs": {"orthanc": self.endpoint()},
        }
        base.update(overrides)
        return Settings(**base)  # type: ignore[arg-type]


def _wait_for(orthanc: Orthanc, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(
                f"{orthanc.root}/system", auth=(orthanc.user, orthanc.password), timeout=2
            ).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer /system within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Orthanc + DICOMweb on a free loopback port (skipped, saying why, when it is not installed)."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    if not DICOMWEB_PLUGIN.exists():
        pytest.skip(
            f"Orthanc's DICOMweb plugin is missing ({DICOMWEB_PLUGIN}): apt-get install orthanc-dicomweb"
        )
    folder = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(free_port(), "medvlab", secrets.token_urlsafe(12))
    config = {
        "Name": "medvlab-test",
        "HttpPort": server.port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {server.user: server.password},
        "HttpsVerifyPeers": False,
        "StableAge": 1,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    log = folder / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [ORTHANC, str(folder / "config.json")], stdout=out, stderr=subprocess.STDOUT
        )
    os.environ[USER_ENV], os.environ[PASSWORD_ENV] = server.user, server.password
    try:
        _wait_for(server, process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True)
class Studies:
    """The study UIDs and patient IDs loaded into Orthanc."""

    ct: pydicom.Dataset
    mr: pydicom.Dataset
    cxr: pydicom.Dataset
    colin_study: str
    colin_series: str
    colin_patient: str
    colin_slices: int


def colin27_series(folder: Path) -> Path:
    """Colin27 (Debian mricron-data) at 2 mm as an MR DICOM series: real anatomy, 91 small slices."""
    from medvlab.imaging.io import load
    from medvlab.seg.sample import MRICRON_DIR, write_dicom_series

    t1 = MRICRON_DIR / "ch2.nii.gz"
    if not t1.exists():
        pytest.skip("Colin27 is missing: apt-get install mricron-data")
    full = load(t1)
    half = MedImage(
        np.ascontiguousarray(full.pixels[::2, ::2, ::2]),
        spacing=tuple(2 * s for s in full.spacing),  # type: ignore[arg-type]
        affine=full.affine @ np.diag([2.0, 2.0, 2.0, 1.0]),
        modality="MR",
        source_format=full.source_format,
    )
    return write_dicom_series(half, folder, "Colin27 T1 2mm", patient_id="COLIN27")


@pytest.fixture(scope="session")
def studies(
    orthanc: Orthanc, dicom_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Studies:
    """pydicom-data's CT_small, MR_small and RG1_UNCI (chest X-ray), and Colin27 as a series, in Orthanc."""
    names = ("CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm")
    folder = tmp_path_factory.mktemp("uploads")
    for name in names:
        ds = pydicom.dcmread(dicom_files[name])
        if name == "MR_small.dcm":  # MR_small has no accession number: give it one to search by
            ds.AccessionNumber = ACCESSION
        ds.save_as(folder / name)
        orthanc.upload(folder / name)
    series = colin27_series(tmp_path_factory.mktemp("colin27") / "series")
    files = sorted(series.iterdir())
    for path in files:
        orthanc.upload(path)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    ct, mr, cxr = (pydicom.dcmread(folder / n, stop_before_pixels=True) for n in names)
    return Studies(
        ct,
        mr,
        cxr,
        str(first.StudyInstanceUID),
        str(first.SeriesInstanceUID),
        str(first.PatientID),
        len(files),
    )
