"""DICOM files: decoding (via pydicom + pylibjpeg plugins), HU, VOI; series in :mod:`.series`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, MedvlabError, UnsupportedFormatError
from medvlab.imaging.bounded import check_size
from medvlab.imaging.codecs import check_frames
from medvlab.imaging.deflate import open_dataset
from medvlab.imaging.geometry import build_affine
from medvlab.imaging.geometry import group_item as _group_item
from medvlab.imaging.geometry import orientation as _orientation
from medvlab.imaging.geometry import position as _position
from medvlab.imaging.geometry import slice_thickness as _slice_thickness
from medvlab.imaging.geometry import spacing_2d as _spacing_2d
from medvlab.imaging.types import MedImage, SourceStudy, VoiLut, VoiWindow

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while a series is read."""

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
KEEP_METADATA = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyDescription",
    "SeriesDescription",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "SliceThickness",
    "KVP",
    "ProtocolName",
    "ImageType",
)
"""Header fields copied into ``MedImage.metadata``. Patient-identifying fields are deliberately left out."""

STUDY_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
"""Patient and study attributes every object medvlab writes back into a study (SEG, SR, encapsulated
PDF) copies from its source. Kept apart in ``MedImage.metadata['source_study']``, as the source had them
(de-identified when the source was), only for those writers: never shown, logged or sent to a model."""


DECODE_FIX = (
    "The file may be truncated or use a compression that no installed decoder handles. medvlab ships "
    "pylibjpeg with its libjpeg, openjpeg and rle plugins; re-export the image uncompressed if it fails."
)


def read_dataset(
    source: Path | bytes,
    stop_before_pixels: bool = False,
    limits: LoadLimits | None = None,
    name: str | None = None,
) -> Dataset:
    """Parse a DICOM file or bytes, also accepting data without the 128-byte preamble/meta header.

    A deflated dataset is inflated only as far as its header promises (see :mod:`.deflate`).
    """
    name = name or (source.name if isinstance(source, Path) else "upload")
    try:
        return open_dataset(source, limits or LoadLimits(), name=name, stop_before_pixels=stop_before_pixels)
    except MedvlabError:
        raise
    except Exception as exc:  # a damaged file can make pydicom's parser raise almost anything
        if isinstance(exc, MemoryError):
            raise
        raise ImageLoadError(
            f"'{name}' could not be parsed as DICOM ({type(exc).__name__}: {exc}).",
            "Check that the file is a complete DICOM Part 10 file (e.g. with dcmdump).",
        ) from exc


def has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in PIXEL_TAGS)


def _first(value: Any) -> Any:
    """First item of a DICOM multi-value, or the value itself."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


def rescale_params(ds: Dataset, frame: int = 0) -> tuple[float, float] | None:
    """(slope, intercept) from the image header or the enhanced Pixel Value Transformation macro."""
    source: Dataset | None = ds if ("RescaleSlope" in ds or "RescaleIntercept" in ds) else None
    if source is None:
        source = _group_item(ds, "PixelValueTransformationSequence", frame)
    if source is None:
        return None
    slope = float(source.get("RescaleSlope", 1) or 1)
    intercept = float(source.get("RescaleIntercept", 0) or 0)
    return slope, intercept


def apply_rescale(arr: np.ndarray, slope: float, intercept: float, inplace: bool = False) -> np.ndarray:
    """Stored values -> modality units, keeping int16 when the result is integral and fits.

    Written here rather than calling pydicom's ``apply_modality_lut`` because that always returns
    float64 (8 bytes a voxel); a 300-slice CT stays 150 MB as int16 instead of 600 MB, and the shift
    happens in place. ``inplace`` allows reusing ``arr`` when it is already int16.
    """
    if slope == 1.0 and float(intercept).is_integer() and arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        shift = int(intercept)
        if lo + shift >= -32768 and hi + shift <= 32767 and lo >= -32768 and hi <= 32767:
            out = arr if (inplace and arr.dtype == np.int16) else arr.astype(np.int16)
            if shift:
                out += np.int16(shift)
            return out
    out32 = arr.astype(np.float32)
    if slope != 1.0:
        out32 *= np.float32(slope)
    if intercept:
        out32 += np.float32(intercept)
    return out32


def header_window(ds: Dataset, frame: int = 0) -> VoiWindow | None:
    """The first Window Center/Width of the header (or of the enhanced Frame VOI LUT macro)."""
    source: Dataset | None = ds if "WindowCenter" in ds and "WindowWidth" in ds else None
    if source is None:
        source = _group_item(ds, "FrameVOILUTSequence", frame)
    if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
        return None
    try:
        center, width = float(_first(source.WindowCenter)), float(_first(source.WindowWidth))
    except (TypeError, ValueError):
        return None
    return VoiWindow(center, width) if width > 0 else None


def header_voi_lut(ds: Dataset) -> VoiLut | None:
    """The first VOI LUT of the header, if it has one."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    try:
        n_entries, first, bits = (int(v) for v in item.LUTDescriptor)
        n_entries = n_entries or 65536
        dtype = np.uint8 if bits <= 8 and len(item.LUTData) == n_entries else np.uint16
        raw = item.LUTData
        table = (
            np.asarray(raw, dtype=np.uint16)
            if isinstance(raw, (list, pydicom.multival.MultiValue))
            else (np.frombuffer(raw, dtype=dtype))
        )
    except (AttributeError, TypeError, ValueError) as exc:
        logger.warning("ignoring unreadable VOI LUT: %s", exc)
        return None
    return VoiLut(first_mapped=first, table=table[:n_entries].astype(np.uint16), bits=bits)


def _to_uint8_rgb(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    top = float(2**bits - 1) if bits else float(arr.max() or 1)
    return np.clip(np.rint(arr.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a meta header (read with force) lack a Transfer Syntax; infer it from the encoding."""
    meta = ds.file_meta if hasattr(ds, "file_meta") else None
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _decode(ds: Dataset, name: str, limits: LoadLimits) -> np.ndarray:
    _ensure_transfer_syntax(ds)
    options = check_frames(ds, f"'{name}'", limits)  # codec headers vs the DICOM header, pre-decoding
    if options:
        ds.pixel_array_options(**options)
    try:
        return np.asarray(ds.pixel_array)
    except BaseException as exc:  # decoders raise many types; all mean "cannot decode this file"
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt and the like; pylibjpeg-rle (Rust) panics with a BaseException
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", None) or "unknown transfer syntax"
        raise ImageLoadError(
            f"Could not decode the pixels of '{name}' ({ts_name}): {exc}", DECODE_FIX
        ) from exc


def _metadata(ds: Dataset) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for tag in KEEP_METADATA:
        value = ds.get(tag)
        if value not in (None, ""):
            meta[tag] = str(value) if not isinstance(value, (int, float)) else value
    sop = ds.get("SOPClassUID")
    if sop is not None:
        meta["SOPClass"] = getattr(sop, "name", str(sop))
        meta["SOPClassUID"] = str(sop)
    if "SOPInstanceUID" in ds:
        meta["SOPInstanceUIDs"] = [str(ds.SOPInstanceUID)]
    meta["source_study"] = SourceStudy({tag: str(ds.get(tag) or "") for tag in STUDY_ATTRIBUTES})
    return meta


def _pixels_and_photometric(ds: Dataset, name: str, arr: np.ndarray, frames: int) -> tuple[np.ndarray, str]:
    """Decoded array -> (pixels with a leading frame axis, photometric) in MedImage conventions."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    if photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageLoadError(f"'{name}' has an unreadable palette colour LUT: {exc}", DECODE_FIX) from exc
        lut_bits = int(ds.get("RedPaletteColorLookupTableDescriptor", [0, 0, 8])[2])
        arr, photometric, samples = _to_uint8_rgb(arr, lut_bits), "RGB", 3
    elif samples == 3:
        # pydicom converts YBR_* to RGB when decoding (as_rgb=True), and J2K ICT/RCT decode to RGB.
        arr, photometric = _to_uint8_rgb(arr, bits), "RGB"
    elif photometric not in ("MONOCHROME1", "MONOCHROME2"):
        photometric = "MONOCHROME2"
    want = 4 if samples == 3 else 3
    if arr.ndim == want - 1:
        arr = arr[np.newaxis]
    if arr.ndim != want:
        raise ImageLoadError(f"'{name}' decoded to an unexpected shape {arr.shape}.", DECODE_FIX)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr, photometric


def damaged(what: str, exc: Exception) -> ImageLoadError:
    return ImageLoadError(
        f"{what} is damaged: reading its header failed ({type(exc).__name__}: {exc}).",
        "Check the file with dcmdump, or re-export it from the source system.",
    )


def read_dicom_file(
    source: Path | bytes,
    limits: LoadLimits | None = None,
    ds: Dataset | None = None,
    name: str | None = None,
) -> MedImage:
    """One DICOM file (a path, or its bytes): a single image, or all frames of a multi-frame object."""
    name = name or (source.name if isinstance(source, Path) else "upload")
    try:
        return _read_dicom_file(source, limits or LoadLimits(), ds, name)
    except MedvlabError:
        raise
    except Exception as exc:  # pydicom parses lazily: a damaged element fails wherever it is first read
        if isinstance(exc, MemoryError):
            raise
        raise damaged(f"'{name}'", exc) from exc


def _read_dicom_file(source: Path | bytes, limits: LoadLimits, ds: Dataset | None, name: str) -> MedImage:
    ds = ds if ds is not None else read_dataset(source, limits=limits, name=name)
    if not has_pixels(ds):
        if "SOPClassUID" not in ds and "Modality" not in ds:  # read with force: not DICOM at all
            raise UnsupportedFormatError(
                f"'{name}' is not a recognised medical image.",
                "medvlab reads PNG/JPG, DICOM files, DICOM series folders and NIfTI (.nii/.nii.gz).",
            )
        kind = getattr(ds.get("SOPClassUID"), "name", None) or "this object"
        raise ImageLoadError(
            f"'{name}' is a DICOM file without pixel data ({kind}).",
            "Load an image object (CT, MR, CR, DX, US, SC ...), not a report, plan or waveform.",
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageLoadError(f"'{name}' lacks valid Rows/Columns/NumberOfFrames.", DECODE_FIX) from exc
    check_size(f"'{name}'", rows, cols, frames, limits)
    arr, photometric = _pixels_and_photometric(ds, name, _decode(ds, name, limits), frames)

    if photometric != "RGB":
        if "ModalityLUTSequence" in ds:
            arr = np.asarray(apply_modality_lut(arr, ds)).astype(np.float32)
        else:
            per_frame = [rescale_params(ds, f) for f in range(arr.shape[0])]
            if len(set(per_frame)) > 1 and all(p is not None for p in per_frame):
                arr = np.stack(
                    [apply_rescale(a, *p) for a, p in zip(arr, per_frame, strict=True) if p]
                ).astype(np.float32)
            elif per_frame[0] is not None:
                arr = apply_rescale(arr, *per_frame[0])
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)

    row_spacing, col_spacing = _spacing_2d(ds)
    positions = [_position(ds, f) for f in range(frames)] if frames > 1 else [_position(ds)]
    orient = _orientation(ds)
    slice_spacing = _slice_thickness(ds)
    if frames > 1 and positions[0] is not None and positions[1] is not None:
        step = float(np.linalg.norm(positions[1] - positions[0]))
        slice_spacing = step if step > 0 else slice_spacing
    spacing = (slice_spacing, row_spacing, col_spacing)
    if orient is not None:
        origin = positions[0] if positions[0] is not None else np.zeros(3)
        affine = build_affine(origin, orient[0], orient[1], spacing)
    else:
        affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])

    meta = _metadata(ds)
    meta["frames"] = frames
    return _image(ds, arr, photometric, spacing, affine, "dicom", meta)


def _image(
    ds: Dataset,
    pixels: np.ndarray,
    photometric: str,
    spacing: tuple[float, float, float],
    affine: np.ndarray,
    source_format: str,
    meta: dict[str, Any],
) -> MedImage:
    """The MedImage of a file or series whose header is ``ds`` (modality and display window from it)."""
    gray = photometric != "RGB"
    return MedImage(
        pixels=pixels,
        spacing=spacing,
        affine=affine,
        modality=str(ds.get("Modality", "OT") or "OT"),
        photometric=photometric,
        source_format=source_format,
        metadata=meta,
        window=header_window(ds) if gray else None,
        voi_lut=header_voi_lut(ds) if gray else None,
    )


def is_dicom_file(path: Path) -> bool:
    """True when the file has the DICM magic at byte 128 (Part 10)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def list_files(folder: Path) -> list[Path]:
    """All regular files under ``folder`` (recursively), in a stable order, skipping DICOMDIR and dotfiles."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or f.upper() == "DICOMDIR":
                continue
            out.append(Path(root) / f)
    return out


def __getattr__(name: str) -> Any:
    """``read_dicom_series`` lives in :mod:`.series` (which imports this module); still importable here."""
    if name == "read_dicom_series":
        from medvlab.imaging.series import read_dicom_series

        return read_dicom_series
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
