"""A batch whose studies live in a PACS (``pacs://NAME/STUDY_UID``): each worker retrieves its series from
a real Orthanc (the PACS tests' server and studies), segments it and writes the row; a study the PACS does
not have is an error row, not the end of the batch."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from medvlab.batch import ResultsFile
from medvlab.services.batch import RESULTS_NAME, BatchTask, run_batch
from tests.pacs.conftest import Orthanc, Studies, orthanc, studies  # noqa: F401 (the PACS fixtures)


@pytest.mark.slow
def test_batch_segments_studies_retrieved_from_the_pacs(
    orthanc: Orthanc,  # noqa: F811
    studies: Studies,  # noqa: F811
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    task = BatchTask("segment", orthanc.settings(cache_dir=cache_dir, device="cpu"), tmp_path)
    missing = "pacs://orthanc/1.2.826.0.1.3680043.8.498.1"
    summary = run_batch(task, [f"pacs://orthanc/{studies.colin_study}", missing])
    assert (summary.ok, summary.failed) == (1, 1)
    rows = {r["source"]: r for r in ResultsFile(tmp_path / RESULTS_NAME).rows()}
    colin = rows[f"pacs://orthanc/{studies.colin_study}"]
    assert 900 < colin["volumes_ml"]["brain"] < 2300  # Colin27 at 2 mm
    seg = pydicom.dcmread(colin["files"]["dicom_seg"], stop_before_pixels=True)
    assert seg.StudyInstanceUID == studies.colin_study and seg.PatientID == studies.colin_patient
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == studies.colin_series
    assert rows[missing]["status"] == "error" and "Fix:" in rows[missing]["error"]
