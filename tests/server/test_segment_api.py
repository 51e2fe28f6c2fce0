"""/v1/segment and segmentation-grounded reports, against the running server."""

from __future__ import annotations

import base64
import gzip
import io
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
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
    assert "segmentation (brain)" in text  # the mask drawn on the slice where it is largest


def test_segment_as_dicom_seg_from_an_allowed_series_folder(
    brain_data: dict[str, Path], tmp_path: Path
) -> None:
    """A DICOM SEG back over HTTP, referencing the series the server was pointed at (allowed folder)."""
    import highdicom as hd
    import pydicom
    from fastapi.testclient import TestClient

    from medvlab.config import Settings
    from medvlab.server.app import create_app
    from medvlab.services import Lab

    series = brain_data["test_dicom"]
    lab = Lab(Settings(model="tiny", allowed_paths=[str(series.parent)], cache_dir=tmp_path))
    with TestClient(create_app(lab, ui=False, preload=False)) as client:
        r = client.post("/v1/segment", json={"image": str(series), "format": "dicom-seg"})
        assert r.status_code == 200, r.text
        seg = hd.seg.segread(io.BytesIO(r.content))
        first = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
        assert (
            seg.StudyInstanceUID == first.StudyInstanceUID
            and seg.get_segment_description(1).segment_label == "brain"
        )
        refused = client.post("/v1/segment", json={"image": "/etc", "format": "dicom-seg"})
        assert refused.status_code == 403
        # one slice of the series is not a volume: a 4xx naming the problem
        one = next(series.iterdir())
        uri = "data:application/dicom;base64," + base64.b64encode(one.read_bytes()).decode()
        r = client.post("/v1/segment", json={"image": uri, "format": "dicom-seg"})
        assert r.status_code == 422 and "3-D volume" in r.json()["error"]["message"]


def test_openai_chat_with_segment_cites_the_volumes(
    live_server: str, brain_data: dict[str, Path], dicom_files: dict[str, Path]
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)

    def ask(image_uri: str) -> str:
        out = client.chat.completions.create(
            model="tiny",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_uri}},
                        {"type": "text", "text": "Is the brain volume normal?"},
                    ],
                }
            ],
            max_tokens=6,
            extra_body={"segment": True},
        )
        return out.choices[0].message.content or ""

    answer = ask(nifti_uri(brain_data["test_image"]))
    assert "Measurements (brain-mask" in answer and "brain: " in answer and " mL" in answer
    xray = (
        "data:application/dicom;base64," + base64.b64encode(dicom_files["RG1_UNCI.dcm"].read_bytes()).decode()
    )
    with pytest.raises(openai.BadRequestError, match="needs a 3-D volume"):
        ask(xray)  # a radiograph cannot be segmented in 3-D


def test_segment_and_report_as_dicom_sr(
    brain_data: dict[str, Path], dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    """The volumes as a TID 1500 SR and an answer as a text SR, over HTTP, in the source study."""
    import pydicom
    from fastapi.testclient import TestClient

    from medvlab.config import Settings
    from medvlab.imaging.structured_reports import sr_texts, sr_volumes
    from medvlab.server.app import create_app
    from medvlab.services import Lab

    series = brain_data["test_dicom"]
    lab = Lab(
        Settings(model="tiny", allowed_paths=[str(series.parent)], cache_dir=tmp_path, max_new_tokens=4)
    )
    first = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    with TestClient(create_app(lab, ui=False, preload=False)) as client:
        r = client.post("/v1/segment", json={"image": str(series), "format": "dicom-sr"})
        assert r.status_code == 200, r.text
        sr = pydicom.dcmread(io.BytesIO(r.content))
        assert sr.StudyInstanceUID == first.StudyInstanceUID and sr.PatientID == first.PatientID
        assert 1500 < sr_volumes(sr)["brain"] < 2300
        ct = (
            "data:application/dicom;base64,"
            + base64.b64encode(dicom_files["CT_small.dcm"].read_bytes()).decode()
        )
        body = {"image": ct, "question": "Any lesion?", "answer": "No lesion.", "format": "dicom-sr"}
        r = client.post("/v1/reports", json=body)
        assert r.status_code == 200, r.text
        answer = pydicom.dcmread(io.BytesIO(r.content))
        source = pydicom.dcmread(dicom_files["CT_small.dcm"], stop_before_pixels=True)
        assert answer.StudyInstanceUID == source.StudyInstanceUID and answer.PatientID == source.PatientID
        assert sr_texts(answer)["Finding"] == "No lesion." and sr_texts(answer)["Algorithm Name"] == "tiny"
