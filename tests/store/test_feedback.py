"""Feedback storage: persistence, concurrent writers, and the feedback -> DPO/SFT dataset round trip."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image, PngImagePlugin

from medvlab.config import PromptOptions, Settings
from medvlab.errors import RequestError, UnsupportedFormatError
from medvlab.imaging import load
from medvlab.services import Lab
from medvlab.store.feedback import FeedbackRecord, FeedbackStore
from medvlab.train.config import DPOTrainConfig
from medvlab.train.data import ImageCache, load_dpo, load_sft
from medvlab.train.dpo import run_dpo
from medvlab.train.metrics import read_metrics
from medvlab.vlm.prompting import DISCLAIMERS
from tests.helpers import write_series
from tests.imaging.test_deid import plant_phi, planted_in


def test_feedback_round_trip_to_dpo_training(
    dicom_files: dict[str, Path], tmp_path: Path, cache_dir: Path, tiny_dir: Path
) -> None:
    lab = Lab(Settings(model="tiny", cache_dir=cache_dir, data_dir=tmp_path / "data"))
    cxr = dicom_files["RG1_UNCI.dcm"]
    answer = "A large pneumothorax.\n\n" + DISCLAIMERS["en"]
    lab.record_feedback([cxr], "Is there a pneumothorax?", answer, -1, better_answer="No pneumothorax.")
    lab.record_feedback([cxr], "Is there an effusion?", "Small left effusion.", 1)
    lab.record_feedback([cxr], "Is there an effusion?", "Massive effusion.", -1)
    write_series(dicom_files["CT_small.dcm"], tmp_path / "series", n=3)
    series = sorted((tmp_path / "series").glob("*.dcm"))
    lab.record_feedback(series, "有出血吗？", "有大量出血。", -1, better_answer="未见出血。")

    # a new Lab (as after a server restart) sees everything
    again = Lab(Settings(model="tiny", cache_dir=cache_dir, data_dir=tmp_path / "data"))
    assert again.feedback.count() == 4
    rows = again.feedback.rows()
    assert rows[0].answer == "A large pneumothorax."  # disclaimer stripped before storing
    stored, original = pydicom.dcmread(rows[0].image_ref), pydicom.dcmread(cxr)
    assert (stored.pixel_array == original.pixel_array).all()  # the image is kept, not the temp upload...
    assert stored.PatientIdentityRemoved == "YES"  # ...de-identified
    assert str(original.PatientName) and str(original.PatientName) not in Path(
        rows[0].image_ref
    ).read_bytes().decode("latin-1")
    assert Path(rows[0].image_ref).name == "image-0001.dcm"  # a neutral name, never the uploaded one
    assert Path(rows[3].image_ref).is_dir() and len(list(Path(rows[3].image_ref).iterdir())) == 3
    assert sorted(p.name for p in Path(rows[3].image_ref).iterdir()) == [
        "image-0001.dcm",
        "image-0002.dcm",
        "image-0003.dcm",
    ]

    prefs = tmp_path / "prefs.jsonl"
    assert again.feedback.export(prefs, "dpo") == 3  # two better answers + one liked-vs-disliked pair
    records = load_dpo(prefs, ImageCache(PromptOptions(max_slices=2)))
    chosen = sorted(r["chosen"][0]["content"][0]["text"] for r in records)
    assert chosen == ["No pneumothorax.", "Small left effusion.", "未见出血。"]
    sft = tmp_path / "sft.jsonl"
    assert again.feedback.export(sft, "sft") == 3
    assert len(load_sft(sft, ImageCache(PromptOptions(max_slices=2)))) == 3

    cfg = DPOTrainConfig(
        model="tiny",
        data=prefs,
        output_dir=tmp_path / "dpo",
        max_steps=2,
        batch_size=1,
        grad_accum=1,
        logging_steps=1,
        max_slices=2,
    )
    assert (run_dpo(cfg, cache_dir) / "adapter_model.safetensors").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "dpo") if "loss" in r] == [1, 2]


def test_concurrent_writers_lose_nothing(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    store = FeedbackStore.at(tmp_path)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(10):
                store.add(FeedbackRecord(f"q{i}-{j}", "a", 1 if j % 2 else -1), [dicom_files["CT_small.dcm"]])
        except BaseException as exc:  # collected, then asserted empty
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reopened = FeedbackStore.at(tmp_path)
    assert reopened.count() == 60
    assert len({r.question for r in reopened.rows()}) == 60
    assert len(list((tmp_path / "images").iterdir())) == 1  # the same image is stored once


def test_bad_feedback_is_refused(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    store = FeedbackStore.at(tmp_path)
    with pytest.raises(RequestError, match="rating must be"):
        store.add(FeedbackRecord("q", "a", 5), [dicom_files["CT_small.dcm"]])
    with pytest.raises(RequestError, match="needs the image"):
        store.add(FeedbackRecord("q", "a", 1), [])
    assert store.count() == 0


def test_store_url_setting_is_used(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    lab = Lab(Settings(model="tiny", store_url=url, data_dir=tmp_path / "data"))
    lab.record_feedback([dicom_files["CT_small.dcm"]], "q?", "a.", 1)
    assert (tmp_path / "elsewhere.sqlite").exists() and not (tmp_path / "data" / "medvlab.sqlite").exists()
    assert FeedbackStore(url, tmp_path / "data" / "images").count() == 1


def test_the_store_keeps_no_identifying_text(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    """Plant names, IDs and free text in real files named after the patient, store them, then search
    every byte and every name under the store (images, SQLite database and its journal, exports)."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    ct = plant_phi(dicom_files["CT_small.dcm"], uploads / "PLANTEDNAME^ZED_ct.dcm")
    cxr = plant_phi(dicom_files["RG1_UNCI.dcm"], uploads / "PLANTEDNAME^ZED_cxr.dcm")
    series = [plant_phi(dicom_files["MR_small.dcm"], uploads / f"PLANTEDNAME_{i}.dcm") for i in range(2)]
    for i, path in enumerate(series):  # two slices of one series
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * i]
        ds.save_as(path)
    volume = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4))
    volume.header["descrip"] = b"PLANTEDNAME^ZED"
    nib.save(volume, uploads / "PLANTEDNAME.nii.gz")
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "photo of PLANTEDNAME ZED")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(uploads / "PLANTEDNAME.png", pnginfo=info)

    store_dir = tmp_path / "store"
    store = FeedbackStore.at(store_dir)
    images = [[ct], [cxr], series, [uploads / "PLANTEDNAME.nii.gz"], [uploads / "PLANTEDNAME.png"]]
    for files in images:
        store.add(FeedbackRecord("What is shown?", "An image.", 1, better_answer="A scan."), files)
    refs = [Path(r.image_ref) for r in store.rows()]
    store.export(store_dir / "exports" / "sft.jsonl", "sft")
    store.export(store_dir / "exports" / "dpo.jsonl", "dpo")

    searched = 0
    for path in store_dir.rglob("*"):
        assert not planted_in(str(path.relative_to(tmp_path)).encode()), path.name
        if path.is_file():
            data = path.read_bytes()
            assert not planted_in(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data), path.name
            searched += 1
    assert searched >= 9  # 6 image files (one series of 2), the database, 2 exports
    assert [r.name for r in refs] == [
        "image-0001.dcm",
        "image-0001.dcm",
        refs[2].name,
        "image-0001.nii.gz",
        "image-0001.png",
    ]
    for ref, original in zip(refs, images, strict=True):  # the stored copies show the same pixels
        before, after = load(original), load(ref)
        assert np.array_equal(before.pixels, after.pixels) and before.spacing == after.spacing


def test_links_are_refused_and_failures_leave_nothing(dicom_files: dict[str, Path], tmp_path: Path) -> None:
    store = FeedbackStore.at(tmp_path / "store")
    link = tmp_path / "scan.dcm"
    link.symlink_to(dicom_files["CT_small.dcm"])
    with pytest.raises(RequestError, match="symbolic link.*Send the file itself"):
        store.keep_image([link])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(UnsupportedFormatError):  # fails after the temporary folder was made
        store.keep_image([dicom_files["CT_small.dcm"], notes])
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    with pytest.raises(RequestError, match="not a regular file"):
        store.keep_image([fifo])
    assert (
        not (tmp_path / "store" / "images").exists() or list((tmp_path / "store" / "images").iterdir()) == []
    )
