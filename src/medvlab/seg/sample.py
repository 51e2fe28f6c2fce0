"""Real sample data that ships offline: MNI152 (training) and Colin27 (testing) brains, with masks.

* nilearn bundles the MNI152 2009 T1 template; its brain mask is the template above 0.2 (nilearn's
  own definition). The template is skull-stripped, which is why brain-mask training paints a random
  head around it (``--synth-head``).
* Debian's ``mricron-data`` ships Colin27 (``ch2.nii.gz``, a single subject scanned 27 times) and its
  BET brain extraction (``ch2bet.nii.gz``); ``ch2bet > 0`` is the test label. A different person,
  scanner and skull: a real train/test split.

:func:`write_dicom_series` also turns a volume into an MR DICOM series, so the DICOM -> DICOM SEG path
can be tried without a PACS.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medvlab.errors import NotFoundError
from medvlab.imaging.types import MedImage

logger = logging.getLogger(__name__)

MRICRON_DIR = Path("/usr/share/mricron/templates")


def colin27_paths(folder: Path = MRICRON_DIR) -> tuple[Path, Path]:
    """(T1, BET brain) of Colin27 from the Debian mricron-data package."""
    t1, bet = folder / "ch2.nii.gz", folder / "ch2bet.nii.gz"
    if not (t1.exists() and bet.exists()):
        raise NotFoundError(
            f"Colin27 (ch2.nii.gz, ch2bet.nii.gz) is not in {folder}.",
            "Install it: apt-get install mricron-data",
        )
    return t1, bet


def write_sample_data(folder: Path, dicom: bool = True) -> dict[str, Path]:
    """Write the brain-mask train/test files into ``folder``; returns their paths by role."""
    from nilearn import datasets

    train, test = folder / "train", folder / "test"
    train.mkdir(parents=True, exist_ok=True)
    test.mkdir(parents=True, exist_ok=True)
    paths = {
        "train_image": train / "mni152_t1.nii.gz",
        "train_label": train / "mni152_brain.nii.gz",
        "test_image": test / "colin27_t1.nii.gz",
        "test_label": test / "colin27_brain.nii.gz",
    }
    template: nib.Nifti1Image = datasets.load_mni152_template(resolution=1)
    mask: nib.Nifti1Image = datasets.load_mni152_brain_mask(resolution=1)
    nib.save(template, str(paths["train_image"]))
    nib.save(_mask(np.asarray(mask.dataobj) > 0, mask.affine), str(paths["train_label"]))
    t1, bet = colin27_paths()
    ch2: nib.Nifti1Image = nib.load(str(t1))  # type: ignore[assignment]
    ch2bet: nib.Nifti1Image = nib.load(str(bet))  # type: ignore[assignment]
    nib.save(ch2, str(paths["test_image"]))
    nib.save(_mask(np.asarray(ch2bet.dataobj) > 0, ch2bet.affine), str(paths["test_label"]))
    if dicom:
        from medvlab.imaging.io import load

        paths["test_dicom"] = write_dicom_series(load(paths["test_image"]), test / "colin27_dicom")
    return paths


def _mask(values: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(values.astype(np.uint8), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_dicom_series(
    image: MedImage,
    folder: Path,
    description: str = "medvlab sample",
    patient_id: str = "MEDVLAB-SAMPLE",
) -> Path:
    """Write a grayscale volume as a single-frame MR DICOM series (16-bit, one file per slice)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = image.pixels
    lo, hi = float(pixels.min()), float(pixels.max())
    slope = max((hi - lo) / 65535.0, 1e-6) if pixels.dtype.kind == "f" or hi > 65535 or lo < 0 else 1.0
    intercept = lo if slope != 1.0 else 0.0
    stored = np.rint((pixels - intercept) / slope).clip(0, 65535).astype(np.uint16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    row_dir = image.affine[:3, 2] / np.linalg.norm(image.affine[:3, 2])
    col_dir = image.affine[:3, 1] / np.linalg.norm(image.affine[:3, 1])
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    for k in range(image.n_slices):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Sample^Brain", patient_id, "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
        ds.SeriesDescription = description
        ds.Manufacturer = "medvlab"
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ImagePositionPatient = [round(float(v), 4) for v in (image.affine @ [k, 0, 0, 1])[:3]]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(image.spacing[1]), float(image.spacing[2])]
        ds.SliceThickness = float(image.spacing[0])
        ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.6g}", f"{intercept:.6g}"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "NONE", "", "3D"
        ds.EchoTime, ds.RepetitionTime = 0, 0
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    logger.info("wrote %d DICOM slices to %s", image.n_slices, folder)
    return folder
