"""The lab on a real PACS (Orthanc + DICOMweb on loopback): search -> retrieve -> segment / report -> store
SEG + PDF + SR -> search again and find them in the same study; clear errors and nothing half-stored."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from medvlab.errors import (
    ConfigError,
    MedvlabError,
    PacsAuthError,
    PacsNotFoundError,
    PacsStoreError,
    PacsUnavailableError,
)
from medvlab.imaging.io import load
from medvlab.pacs import Filters
from medvlab.services import Lab, pacs
from tests.helpers import free_port
from tests.pacs.conftest import ACCESSION, USER_ENV, Orthanc, Studies


@pytest.fixture(scope="module")
def pacs_lab(orthanc: Orthanc, lab: Lab, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """A lab that knows the Orthanc above, sharing the session's tiny model, with its own knowledge base."""
    kb = tmp_path_factory.mktemp("pacs-kb") / "kb.sqlite"
    return Lab(orthanc.settings(cache_dir=cache_dir, kb_url=f"sqlite:///{kb}"), backend=lab.backend)


def instances(orthanc: Orthanc) -> int:
    with orthanc.rest() as http:
        return int(http.get("/statistics").json()["CountInstances"])


def stored_file(orthanc: Orthanc, sop_uid: str) -> pydicom.Dataset:
    """An instance as Orthanc keeps it, read through its own REST API (not through the lab)."""
    with orthanc.rest() as http:
        found = http.post(
            "/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}
        ).json()
        assert len(found) == 1, f"{sop_uid} is not in Orthanc"
        return pydicom.dcmread(io.BytesIO(http.get(f"/instances/{found[0]}/file").content))


def test_search_by_patient_accession_date_and_modality(pacs_lab: Lab, studies: Studies) -> None:
    s = pacs_lab.settings
    by_patient = pacs.search_studies(s, "orthanc", Filters(patient_id=str(studies.ct.PatientID)))
    assert [r.study_uid for r in by_patient] == [str(studies.ct.StudyInstanceUID)]
    assert by_patient[0].modalities == ["CT"] and by_patient[0].date == str(studies.ct.StudyDate)
    by_accession = pacs.search_studies(s, "orthanc", Filters(accession=ACCESSION))
    assert [r.study_uid for r in by_accession] == [str(studies.mr.StudyInstanceUID)]
    assert by_accession[0].accession == ACCESSION
    # MR_small and RG1_UNCI are dated 2004-08-26; CT_small 2004-01-19; Colin27 2026
    in_august = {r.study_uid for r in pacs.search_studies(s, "orthanc", Filters(date="20040801-20040831"))}
    assert in_august == {str(studies.mr.StudyInstanceUID), str(studies.cxr.StudyInstanceUID)}
    mr = {r.study_uid for r in pacs.search_studies(s, "orthanc", Filters(modality="MR"))}
    assert {str(studies.mr.StudyInstanceUID), studies.colin_study} <= mr
    assert str(studies.ct.StudyInstanceUID) not in mr
    series = pacs.search_series(s, "orthanc", studies.colin_study)
    assert [x.series_uid for x in series if x.modality == "MR"] == [studies.colin_series]
    assert series[0].n_instances == studies.colin_slices


def test_a_series_arrives_as_the_volume_its_files_make(
    pacs_lab: Lab, studies: Studies, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    info, files = pacs.get(
        pacs_lab, "orthanc", studies.colin_study, None, tmp_path / "copy", lambda d, t: seen.append((d, t))
    )
    assert info["series"]["series_uid"] == studies.colin_series  # the largest image series, by default
    assert info["image"]["shape"] == [91, 109, 91] and info["image"]["spacing_mm"] == [2.0, 2.0, 2.0]
    assert len(files) == studies.colin_slices and seen[-1] == (studies.colin_slices, studies.colin_slices)
    # the same pixels as the files read straight from disk
    assert np.array_equal(
        load(tmp_path / "copy").pixels, pacs_lab.load_image(sorted((tmp_path / "copy").iterdir())).pixels
    )


def test_a_too_large_series_is_refused_before_its_pixels_are_fetched(
    orthanc: Orthanc, lab: Lab, cache_dir: Path, studies: Studies
) -> None:
    small = Lab(orthanc.settings(cache_dir=cache_dir, max_request_voxels=100_000), backend=lab.backend)
    with pytest.raises(MedvlabError, match="above the limits"):
        pacs.get(small, "orthanc", studies.colin_study)


@pytest.mark.slow
def test_segment_stores_seg_and_sr_in_the_source_study(
    orthanc: Orthanc, pacs_lab: Lab, studies: Studies
) -> None:
    from medvlab.imaging.structured_reports import sr_volumes

    result = pacs.segment(pacs_lab, "orthanc", studies.colin_study)
    assert result.stored is not None and 900 < result.volumes_ml["brain"] < 2300  # 2 mm Colin27
    kinds = {i["kind"]: i for i in result.stored.instances}
    assert set(kinds) == {"SEG", "SR"}
    # searching again finds both in the same study, beside the MR series
    modalities = {
        s.modality: s.series_uid
        for s in pacs.search_series(pacs_lab.settings, "orthanc", studies.colin_study)
    }
    assert {"MR", "SEG", "SR"} <= set(modalities) and modalities["SEG"] == kinds["SEG"]["series_uid"]
    seg, sr = (
        stored_file(orthanc, kinds["SEG"]["sop_instance_uid"]),
        stored_file(orthanc, kinds["SR"]["sop_instance_uid"]),
    )
    for ds in (seg, sr):
        assert ds.StudyInstanceUID == studies.colin_study and ds.PatientID == studies.colin_patient
    referenced = {
        str(i.ReferencedSOPInstanceUID)
        for s in seg.ReferencedSeriesSequence
        for i in s.ReferencedInstanceSequence
    }
    assert len(referenced) > 10  # the slices with brain in them, all from the source series
    assert sr_volumes(sr)["brain"] == pytest.approx(result.volumes_ml["brain"], abs=1e-3)


def test_report_stores_pdf_and_sr_and_they_feed_the_knowledge_base(
    orthanc: Orthanc, pacs_lab: Lab, studies: Studies
) -> None:
    study = str(studies.ct.StudyInstanceUID)
    question = "Describe the abdomen in this CT."
    result = pacs.report(pacs_lab, "orthanc", study, question)
    assert result.stored is not None and {i["kind"] for i in result.stored.instances} == {"PDF", "SR"}
    by_kind = {i["kind"]: stored_file(orthanc, i["sop_instance_uid"]) for i in result.stored.instances}
    for ds in by_kind.values():
        assert ds.StudyInstanceUID == study and ds.PatientID == studies.ct.PatientID
    pdf = by_kind["PDF"]
    text = "".join(
        p.extract_text() or "" for p in PdfReader(io.BytesIO(bytes(pdf.EncapsulatedDocument))).pages
    )
    assert question in text
    assert {"SR", "DOC"} <= {s.modality for s in pacs.search_series(pacs_lab.settings, "orthanc", study)}

    before = pacs_lab.kb_count()
    imported = pacs.import_reports(pacs_lab, "orthanc", patient_id=str(studies.ct.PatientID))
    assert imported["reports"] == 2 and imported["added"] == 2  # the PDF's text and the SR's
    assert imported["total"] == before + 2
    again = pacs.import_reports(pacs_lab, "orthanc", patient_id=str(studies.ct.PatientID))
    assert again["reports"] == 2 and again["added"] == 0 and again["total"] == before + 2  # no duplicates
    assert imported["sources"] == [f"PACS orthanc · study {study} · {studies.ct.StudyDate}"]
    hits = pacs_lab.kb_search("abdomen CT", 5)
    assert hits and all(study in h.snippet.source for h in hits[:2])
    assert any(question in h.snippet.text for h in hits)


def test_ask_can_store_its_answer_as_a_text_sr(orthanc: Orthanc, pacs_lab: Lab, studies: Studies) -> None:
    study = str(studies.mr.StudyInstanceUID)
    result = pacs.ask(pacs_lab, "orthanc", study, "What sequence is this?", store_sr=True)
    assert result.answer and result.stored is not None
    sr = stored_file(orthanc, result.stored.instances[0]["sop_instance_uid"])
    from medvlab.imaging.structured_reports import sr_texts

    texts = sr_texts(sr)
    assert texts["Request"] == "What sequence is this?" and sr.PatientID == studies.mr.PatientID
    assert texts["Finding"] in result.answer


def test_failures_are_clear_and_store_nothing(
    tmp_path: Path,
    orthanc: Orthanc,
    pacs_lab: Lab,
    lab: Lab,
    cache_dir: Path,
    studies: Studies,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = instances(orthanc)
    with pytest.raises(
        PacsNotFoundError, match="Study 1.2.3.4 is not in PACS 'orthanc'.*medvlab pacs search"
    ):
        pacs.segment(pacs_lab, "orthanc", "1.2.3.4")
    with pytest.raises(PacsNotFoundError, match="Pick one of its series"):
        pacs.report(pacs_lab, "orthanc", studies.colin_study, "Q?", series_uid="1.2.3.4")
    # a radiograph cannot be segmented: the error comes before anything is built or stored
    with pytest.raises(MedvlabError, match="3-D"):
        pacs.segment(pacs_lab, "orthanc", str(studies.cxr.StudyInstanceUID))
    with pytest.raises(ConfigError, match="did you mean 'orthanc'"):
        pacs.search_studies(pacs_lab.settings, "orthnc", Filters())

    monkeypatch.setenv("MEDVLAB_TEST_WRONG_PASSWORD", "not-the-password")
    wrong = Lab(
        orthanc.settings(
            cache_dir=cache_dir,
            pacs={"orthanc": orthanc.endpoint(password_env="MEDVLAB_TEST_WRONG_PASSWORD")},
        ),
        backend=lab.backend,
    )
    with pytest.raises(
        PacsAuthError, match=rf"refused the lab's credentials \(401\).*\${USER_ENV} / \$MEDVLAB_TEST_WRONG"
    ):
        pacs.report(wrong, "orthanc", str(studies.ct.StudyInstanceUID), "Q?")

    down = Lab(
        orthanc.settings(cache_dir=cache_dir, pacs={"orthanc": f"http://127.0.0.1:{free_port()}/dicom-web"}),
        backend=lab.backend,
    )
    with pytest.raises(PacsUnavailableError, match="cannot be reached.*Start Orthanc.*MEDVLAB_PACS"):
        pacs.segment(down, "orthanc", studies.colin_study)
    # objects are checked as a whole before any is sent: one from another study stops them all
    client = pacs.client(pacs_lab.settings, "orthanc")
    copy = _ct_copy(studies, tmp_path)
    mine, other = pydicom.dcmread(copy), pydicom.dcmread(copy)
    other.StudyInstanceUID = "1.2.3.4.5"
    with pytest.raises(PacsStoreError, match="belongs to study 1.2.3.4.5.*nothing was stored"):
        client.store(str(studies.ct.StudyInstanceUID), [("CT", mine), ("SR", other)])
    assert instances(orthanc) == count


def _ct_copy(studies: Studies, folder: Path) -> Path:
    """A new instance of the CT study (fresh SOP Instance UID), as a file."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / "ct-copy.dcm"
    ds.save_as(path)
    assert ds.StudyInstanceUID == studies.ct.StudyInstanceUID
    return path


def test_non_image_series_cannot_be_opened(pacs_lab: Lab, studies: Studies) -> None:
    pacs.ask(pacs_lab, "orthanc", str(studies.mr.StudyInstanceUID), "Any finding?", store_sr=True)
    sr = next(
        s
        for s in pacs.search_series(pacs_lab.settings, "orthanc", str(studies.mr.StudyInstanceUID))
        if s.modality == "SR"
    )
    with pytest.raises(MedvlabError, match="not images"):
        pacs.get(pacs_lab, "orthanc", str(studies.mr.StudyInstanceUID), sr.series_uid)
