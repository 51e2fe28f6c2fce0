"""DICOM files and series: decoding (via pydicom + pylibjpeg plugins), HU, VOI, geometry, series sorting."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError, MedvlabError
from medvlab.imaging.types import MedImage, VoiLut, VoiWindow

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

DECODE_FIX = (
    "The file may be truncated or use a compression that no installed decoder handles. medvlab ships "
    "pylibjpeg with its libjpeg, openjpeg and rle plugins; re-export the image uncompressed if it fails."
)


def read_dataset(path: Path, stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file, also accepting files without the 128-byte preamble/meta header."""
    try:
        return pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # a damaged file can make pydicom's parser raise almost anything
        if isinstance(exc, MemoryError):
            raise
        raise ImageLoadError(
            f"'{path.name}' could not be parsed as DICOM ({type(exc).__name__}: {exc}).",
            "Check that the file is a complete DICOM Part 10 file (e.g. with dcmdump).",
        ) from exc


def has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in PIXEL_TAGS)


def _first(value: Any) -> Any:
    """First item of a DICOM multi-value, or the value itself."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


def _group_item(ds: Dataset, sequence: str, frame: int | None = None) -> Dataset | None:
    """Item of a functional-group macro (``sequence``) for ``frame``, per-frame first, then shared."""
    if frame is not None:
        per = ds.get("PerFrameFunctionalGroupsSequence")
        if per and frame < len(per) and sequence in per[frame]:
            return per[frame][sequence][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0]:
        return shared[0][sequence][0]
    return None


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


def _spacing_2d(ds: Dataset, frame: int = 0) -> tuple[float, float]:
    measures = _group_item(ds, "PixelMeasuresSequence", frame)
    for src in (ds, measures):
        if src is None:
            continue
        for tag in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
            value = src.get(tag)
            if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
                return float(value[0]), float(value[1])
    return 1.0, 1.0


def _slice_thickness(ds: Dataset) -> float:
    measures = _group_item(ds, "PixelMeasuresSequence", 0)
    for src in (ds, measures):
        if src is None:
            continue
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = src.get(tag)
            if value not in (None, "") and float(value) > 0:
                return float(value)
    return 1.0


def _orientation(ds: Dataset, frame: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    iop = ds.get("ImageOrientationPatient")
    if iop is None:
        item = _group_item(ds, "PlaneOrientationSequence", frame)
        iop = item.get("ImageOrientationPatient") if item is not None else None
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray([float(x) for x in iop])
    return v[:3], v[3:]


def _position(ds: Dataset, frame: int = 0) -> np.ndarray | None:
    ipp = ds.get("ImagePositionPatient")
    if ipp is None:
        item = _group_item(ds, "PlanePositionSequence", frame)
        ipp = item.get("ImagePositionPatient") if item is not None else None
    if ipp is None or len(ipp) != 3:
        return None
    return np.asarray([float(x) for x in ipp])


def build_affine(
    origin: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Affine from DICOM geometry for array order ``(slice, row, col)``.

    ``row_dir`` is ImageOrientationPatient[0:3] (direction of increasing column index) and ``col_dir``
    ImageOrientationPatient[3:6] (increasing row index), as in DICOM PS3.3 C.7.6.2.1.1.
    """
    normal = np.cross(row_dir, col_dir)
    affine = np.eye(4)
    affine[:3, 0] = normal * spacing[0]
    affine[:3, 1] = col_dir * spacing[1]
    affine[:3, 2] = row_dir * spacing[2]
    affine[:3, 3] = origin
    return affine


def check_size(what: str, rows: int, cols: int, frames: int, limits: LoadLimits) -> None:
    """Refuse absurd dimensions before any pixel data is decoded."""
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise ImageLoadError(f"{what} has empty dimensions ({frames}x{rows}x{cols}).", "The file is damaged.")
    if rows * cols > limits.max_pixels_per_slice:
        raise ImageTooLargeError(
            f"{what} is {rows}x{cols} pixels, above the limit of {limits.max_pixels_per_slice} per slice.",
            "Downsample the image, or raise LoadLimits.max_pixels_per_slice if it is genuine.",
        )
    if frames > limits.max_slices:
        raise ImageTooLargeError(
            f"{what} has {frames} slices/frames, above the limit of {limits.max_slices}.",
            "Split the series, or raise LoadLimits.max_slices if it is genuine.",
        )
    if rows * cols * frames > limits.max_voxels:
        raise ImageTooLargeError(
            f"{what} has {rows * cols * frames} voxels, above the limit of {limits.max_voxels}.",
            "Crop or downsample the volume, or raise LoadLimits.max_voxels.",
        )


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


def _decode(ds: Dataset, name: str) -> np.ndarray:
    _ensure_transfer_syntax(ds)
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # decoders raise many types; all mean "cannot decode this file"
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


def read_dicom_file(path: Path, limits: LoadLimits | None = None, ds: Dataset | None = None) -> MedImage:
    """One DICOM file: a single image, or all frames of a multi-frame object as slices."""
    try:
        return _read_dicom_file(path, limits, ds)
    except MedvlabError:
        raise
    except Exception as exc:  # pydicom parses lazily: a damaged element fails wherever it is first read
        if isinstance(exc, MemoryError):
            raise
        raise damaged(f"'{path.name}'", exc) from exc


def _read_dicom_file(path: Path, limits: LoadLimits | None, ds: Dataset | None) -> MedImage:
    limits = limits or LoadLimits()
    ds = ds if ds is not None else read_dataset(path)
    name = path.name
    if not has_pixels(ds):
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
    arr, photometric = _pixels_and_photometric(ds, name, _decode(ds, name), frames)

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


def _slice_positions(datasets: Sequence[Dataset]) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, slice normal) when every slice has a position and an orientation, else None."""
    orients = [_orientation(d) for d in datasets]
    positions = [_position(d) for d in datasets]
    if any(o is None for o in orients) or any(p is None for p in positions):
        return None
    row_dir, col_dir = orients[0]  # type: ignore[misc]
    return np.array(positions), np.cross(row_dir, col_dir)


def read_dicom_series(
    paths: Sequence[Path],
    series_uid: str | None = None,
    limits: LoadLimits | None = None,
    progress: Progress | None = None,
    what: str = "the folder",
) -> MedImage:
    """A DICOM series from many files (see :func:`_read_series`); a damaged header is a clear error."""
    try:
        return _read_series(paths, series_uid, limits, progress, what)
    except MedvlabError:
        raise
    except Exception as exc:  # lazily parsed elements of a damaged file fail when first read
        if isinstance(exc, MemoryError):
            raise
        raise damaged(f"A file in {what}", exc) from exc


def _read_series(
    paths: Sequence[Path],
    series_uid: str | None,
    limits: LoadLimits | None,
    progress: Progress | None,
    what: str,
) -> MedImage:
    """A DICOM series from many files: grouped by SeriesInstanceUID, sorted by position, stacked.

    Files that are not DICOM are skipped; if several series are present, ``series_uid`` picks one,
    else the one with the most images is used and the others are listed in ``metadata['other_series']``.
    """
    limits = limits or LoadLimits()
    if len(paths) > 4 * limits.max_slices:
        raise ImageTooLargeError(
            f"{what} holds {len(paths)} files, too many for one series (limit {limits.max_slices} slices).",
            "Point medvlab at the folder of a single series.",
        )
    groups: dict[str, list[Dataset]] = defaultdict(list)
    names: dict[int, str] = {}
    for i, p in enumerate(paths):
        if progress:
            progress(i, len(paths))
        if p.stat().st_size > limits.max_file_mb * 2**20:
            raise ImageTooLargeError(
                f"'{p.name}' is larger than {limits.max_file_mb} MiB.", "Check the file."
            )
        try:
            ds = pydicom.dcmread(p, force=is_dicom_file(p) or p.suffix.lower() in (".dcm", ".dicom", ".ima"))
        except Exception:  # not DICOM, or too damaged to parse: not part of the series
            logger.debug("skipping non-DICOM file %s", p)
            continue
        if not has_pixels(ds) or "Rows" not in ds:
            logger.debug("skipping DICOM file without pixels %s", p)
            continue
        groups[str(ds.get("SeriesInstanceUID", "unknown"))].append(ds)
        names[id(ds)] = p.name
    if progress:
        progress(len(paths), len(paths))
    if not groups:
        raise ImageLoadError(
            f"No DICOM image files were found in {what}.", "Point medvlab at a DICOM series folder."
        )
    if series_uid is not None:
        if series_uid not in groups:
            raise ImageLoadError(
                f"Series '{series_uid}' is not in {what}.", f"Available series: {', '.join(sorted(groups))}."
            )
        chosen = series_uid
    else:
        chosen = max(groups, key=lambda k: len(groups[k]))
    datasets = groups[chosen]
    others = {k: len(v) for k, v in groups.items() if k != chosen}
    if others:
        logger.info("%s holds %d series; using %s (%d images)", what, len(groups), chosen, len(datasets))

    if len(datasets) == 1:
        image = read_dicom_file(Path(names[id(datasets[0])]), limits, ds=datasets[0])
        image.metadata["other_series"] = others
        return image

    geometry = _slice_positions(datasets)
    if geometry is not None:  # sort along the slice normal; headers are parsed once
        order = np.argsort(geometry[0] @ geometry[1], kind="stable")
        datasets = [datasets[i] for i in order]
        positions = geometry[0][order]
    else:
        logger.warning("slices lack ImagePositionPatient/ImageOrientationPatient; sorting by InstanceNumber")
        datasets.sort(key=lambda d: float(d.get("InstanceNumber", 0) or 0))
    first = datasets[0]
    rows, cols = int(first.Rows), int(first.Columns)
    check_size(what, rows, cols, len(datasets), limits)
    for d in datasets:
        if int(d.Rows) != rows or int(d.Columns) != cols or int(d.get("NumberOfFrames", 1) or 1) != 1:
            raise ImageLoadError(
                f"'{names[id(d)]}' is {d.Rows}x{d.Columns} (frames {d.get('NumberOfFrames', 1)}) "
                f"but the series is {rows}x{cols} single-frame.",
                "Load the files of one series only, or pass series_uid to pick one.",
            )

    first_arr, photometric = _pixels_and_photometric(
        first, names[id(first)], _decode(first, names[id(first)]), 1
    )
    stack = np.empty((len(datasets), *first_arr.shape[1:]), dtype=first_arr.dtype)
    stack[0] = first_arr[0]
    for i, d in enumerate(datasets[1:], start=1):
        arr, _ = _pixels_and_photometric(d, names[id(d)], _decode(d, names[id(d)]), 1)
        stack[i] = arr[0]

    pixels: np.ndarray = stack
    if photometric != "RGB":
        params = [rescale_params(d) for d in datasets]
        if len(set(params)) == 1 and params[0] is not None:
            pixels = apply_rescale(stack, *params[0], inplace=True)
        elif any(p is not None for p in params):
            pixels = np.stack(
                [apply_rescale(s, *(p or (1.0, 0.0))) for s, p in zip(stack, params, strict=True)]
            )
            pixels = pixels.astype(np.float32)

    row_spacing, col_spacing = _spacing_2d(first)
    meta = _metadata(first)
    meta["files"] = len(datasets)
    meta["SOPInstanceUIDs"] = [str(d.SOPInstanceUID) for d in datasets if "SOPInstanceUID" in d]
    meta["other_series"] = others
    if geometry is not None:
        steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        slice_spacing = float(np.median(steps)) if len(steps) else _slice_thickness(first)
        if slice_spacing <= 0:
            raise ImageLoadError(
                f"Several images in {what} share one position; they are not one 3-D series.",
                "Pick a single series (e.g. one echo or phase) and load it alone.",
            )
        if len(steps) and (steps.max() - steps.min()) > 0.1 * slice_spacing:
            meta["nonuniform_spacing"] = True
            logger.warning("slice spacing in %s varies from %.3g to %.3g mm", what, steps.min(), steps.max())
        spacing = (slice_spacing, row_spacing, col_spacing)
        row_dir, col_dir = _orientation(first)  # type: ignore[misc]
        affine = build_affine(positions[0], row_dir, col_dir, spacing)
    else:
        spacing = (_slice_thickness(first), row_spacing, col_spacing)
        affine = np.diag([*spacing, 1.0])

    return _image(first, pixels, photometric, spacing, affine, "dicom-series", meta)
