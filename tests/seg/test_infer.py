"""Prediction on real brains: the shipped model on Colin27, NIfTI and DICOM SEG outputs, volumes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medvlab.errors import ConfigError
from medvlab.imaging.io import load
from medvlab.imaging.types import MedImage
from medvlab.seg.infer import InferenceOptions, Predictor, keep_largest_component, volumes_ml
from medvlab.seg.study import segment_study


@pytest.fixture(scope="module")
def brain() -> Predictor:
    return Predictor.load("brain-mask")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_shipped_model_segments_colin27_brain(
    brain: Predictor, brain_data: dict[str, Path], tmp_path: Path
) -> None:
    """Trained on MNI152 only; Colin27 is another person, scanner and skull: Dice >= 0.90."""
    result = segment_study(brain_data["test_image"], brain, nifti=tmp_path / "mask.nii.gz")
    truth = np.asarray(nib.load(brain_data["test_label"]).dataobj) > 0
    saved: nib.Nifti1Image = nib.load(tmp_path / "mask.nii.gz")  # type: ignore[assignment]
    original: nib.Nifti1Image = nib.load(brain_data["test_image"])  # type: ignore[assignment]
    assert saved.shape == original.shape and np.allclose(saved.affine, original.affine)  # the input's grid
    assert _dice(np.asarray(saved.dataobj) > 0, truth) >= 0.90
    ml = result.segmentation.volumes_ml["brain"]
    assert ml == pytest.approx(float((np.asarray(saved.dataobj) > 0).sum()) / 1000, abs=0.01)  # 1 mm voxels
    assert 1200 < ml < 2300  # an adult brain


def test_dicom_series_gives_a_dicom_seg_that_references_it(
    brain: Predictor, brain_data: dict[str, Path], tmp_path: Path
) -> None:
    import highdicom as hd

    series = brain_data["test_dicom"]
    result = segment_study(series, brain, nifti=tmp_path / "m.nii.gz", dicom_seg=tmp_path / "seg.dcm")
    nifti_result = segment_study(brain_data["test_image"], brain)
    # same volume whichever way the study arrives (the DICOM copy is rescaled to 16 bits)
    assert result.segmentation.volumes_ml["brain"] == pytest.approx(
        nifti_result.segmentation.volumes_ml["brain"], rel=0.01
    )
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.get_segment_description(1).segment_label == "brain"
    sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series.iterdir()}
    referenced = {
        str(i.ReferencedSOPInstanceUID)
        for s in seg.ReferencedSeriesSequence
        for i in s.ReferencedInstanceSequence
    }
    assert referenced and referenced <= sources
    first = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    assert (
        seg.StudyInstanceUID == first.StudyInstanceUID
        and seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    )
    # the SEG frames hold the mask: its voxel count matches the volume
    assert int(seg.pixel_array.sum()) == int((result.segmentation.labels > 0).sum())


def test_nifti_input_cannot_make_a_dicom_seg(
    brain: Predictor, brain_data: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="not DICOM"):
        segment_study(brain_data["test_image"], brain, dicom_seg=tmp_path / "x.dcm")


def test_fast_options_agree_with_the_plain_path(brain: Predictor, brain_data: dict[str, Path]) -> None:
    image = load(brain_data["test_image"])
    plain = Predictor(
        brain.checkpoint, options=InferenceOptions(crop_foreground=False, sw_batch_size=1)
    ).predict(image)
    fast = Predictor(brain.checkpoint, options=InferenceOptions(amp=True, channels_last=True)).predict(image)
    assert _dice(plain.labels > 0, fast.labels > 0) > 0.99


def test_an_empty_volume_has_no_structures(brain: Predictor) -> None:
    seg = brain.predict(MedImage(np.zeros((40, 40, 40), np.float32)))
    assert seg.volumes_ml == {"brain": 0.0} and not seg.labels.any()


def test_sphere_model_finds_the_sphere_in_a_new_case(sphere_model: Path, tmp_path: Path) -> None:
    from tests.seg.conftest import write_sphere_case

    img, lab = write_sphere_case(tmp_path, "new", seed=99)
    seg = Predictor.load(sphere_model).predict(load(img))
    truth = load(lab).pixels
    assert _dice(seg.labels == 1, truth == 1) > 0.8
    assert seg.names == ["sphere", "box"]


def test_volumes_and_largest_component() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1  # 27 voxels
    labels[7, 7, 7] = 1  # a stray voxel
    labels[5:7, 0:2, 0:2] = 2  # 8 voxels
    assert volumes_ml(labels, (2.0, 1.0, 0.5), ["a", "b"]) == {"a": 0.03, "b": 0.01}
    kept = keep_largest_component(labels, 3)
    assert (kept == 1).sum() == 27 and (kept == 2).sum() == 8 and kept[7, 7, 7] == 0


def test_seg_writer_explains_a_source_it_cannot_reference(
    dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    """pydicom's enhanced MR has no frame of reference, so no multi-frame SEG can point into it."""
    from medvlab.seg.model import load_checkpoint
    from medvlab.seg.outputs import write_dicom_seg

    source = dicom_files["emri_small.dcm"]
    image = load(source)
    labels = (image.pixels > np.percentile(image.pixels, 70)).astype(np.uint8)
    with pytest.raises(ConfigError, match="cannot reference 'emri_small.dcm'.*Frame of Reference"):
        write_dicom_seg(labels, image, source, load_checkpoint("brain-mask").spec, tmp_path / "s.dcm")


def test_progress_counts_every_batch_of_windows(brain: Predictor, brain_data: dict[str, Path]) -> None:
    from medvlab.seg.data import prepare
    from medvlab.seg.infer import window_count

    calls: list[tuple[int, int]] = []
    x, _ = prepare(load(brain_data["test_image"]), brain.spec)
    plain = Predictor(brain.checkpoint, options=InferenceOptions(crop_foreground=False))
    plain.logits(x, lambda done, total: calls.append((done, total)))
    # 90 x 108 x 90 voxels at 2 mm, 64^3 windows every 32 voxels: 2 x 3 x 2 windows, 3 batches of 4
    assert tuple(x.shape[1:]) == (90, 108, 90)
    assert window_count(x.shape[1:], brain.spec.patch, 0.5) == 12
    assert calls == [(1, 3), (2, 3), (3, 3)]  # the total announced is the number of batches MONAI ran
