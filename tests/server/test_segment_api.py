"""/v1/segment and segmentation-grounded reports, against the running server."""

from __future__ import annotations

import base64
import gzip
import io
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
from pypdf import PdfReader


def nifti_uri(path: Path) -> str:
    return "data:application/gzip;base64," + base64.b64encode(path.read_bytes()).decode()


def test_segment_returns_volumes_and_the_mask(live_server: str, brain_data: dict[str, Path]) -> None:
    body = {"image": nifti_uri(brain_data["test_image"])}
    r = httpx.post(f"{live_server}/v1/segment", json=body, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model"] == "brain-mask" and data["structures"] == ["brain"]
    assert 1200 < data["volumes_ml"]["brain"] < 2300 and data["shape"] == [181, 217, 181]
    r = httpx.post(f"{live_server}/v1/segment", json={**body, "format": "nifti"}, timeout=300)
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(r.content))
    assert mask.shape == (181, 217, 181)
    assert float((np.asarray(mask.dataobj) > 0).sum()) / 1000 == data["volumes_ml"]["brain"]


def test_segment_refuses_unserved_models_and_flat_images(
    live_server: str, brain_data: dict[str, Path], dicom_files: dict[str, Path]
) -> None:
    body = {"image": nifti_uri(brain_data["test_image"]), "model": "/etc/passwd"}
    r = httpx.post(f"{live_server}/v1/segment", json=body, timeout=30)
    assert r.status_code == 403 and "not served here" in r.json()["error"]["message"]
    xray = (
        "data:application/dicom;base64," + base64.b64encode(dicom_files["RG1_UNCI.dcm"].read_bytes()).decode()
    )
    r = httpx.post(f"{live_server}/v1/segment", json={"image": xray}, timeout=30)
    assert r.status_code == 422 and "3-D volume" in r.json()["error"]["message"]


def test_report_with_segmentation_cites_the_volumes(live_server: str, brain_data: dict[str, Path]) -> None:
    body = {
        "image": nifti_uri(brain_data["test_image"]),
        "question": "How large is the brain?",
        "max_new_tokens": 6,
        "segment": True,
    }
    r = httpx.post(f"{live_server}/v1/reports", json=body, timeout=300)
    assert r.status_code == 200, r.text
    text = "".join(p.extract_text() or "" for p in PdfReader(io.BytesIO(r.content)).pages)
    assert "brain" in text and "mL" in text and "Measurements" in text
