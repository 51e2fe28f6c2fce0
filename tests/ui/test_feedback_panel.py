"""The feedback panel stores the session's uploads (held in memory) de-identified, under neutral names."""

from __future__ import annotations

import io
from pathlib import Path

import gradio as gr
import pydicom
import pytest

from medvlab.config import Settings
from medvlab.services import Lab
from medvlab.ui.panels.feedback import RATINGS, send
from medvlab.ui.state import ChatSession
from medvlab.ui.uploads import Uploads


def test_feedback_from_the_page_keeps_no_identified_copy(
    lab: Lab, cache_dir: Path, tmp_path: Path, dicom_files: dict[str, Path]
) -> None:
    ds = pydicom.dcmread(dicom_files["CT_small.dcm"])
    ds.PatientName = "PLANTEDNAME^ZED"
    ds.StudyDescription = "CT of PLANTEDNAME"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = tmp_path / "data"
    private = Lab(Settings(model="tiny", cache_dir=cache_dir, data_dir=data), backend=lab.backend)
    uploads = Uploads([("PLANTEDNAME^ZED.dcm", out.getvalue())])
    session = ChatSession(qa=[("Any lesion?", "No lesion.")])
    good = next(label for label, value in RATINGS.items() if value == 1)
    with pytest.raises(gr.Error):  # no rating picked: says so, stores nothing
        send(private, uploads, None, "", "auto", 8, "English", session)
    message = send(private, uploads, good, "Clear lungs.", "auto", 8, "English", session)
    assert "#1" in message and private.feedback_count() == 1
    stored = [p for p in data.rglob("*") if p.is_file()]
    assert stored and not any("PLANTED" in p.name.upper() for p in stored)
    assert not any(b"PLANTED" in p.read_bytes().upper() for p in stored)
