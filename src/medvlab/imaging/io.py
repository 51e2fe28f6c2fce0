"""``load()``: one entry point for PNG/JPG, DICOM files, DICOM series folders and NIfTI volumes."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError, UnsupportedFormatError
from medvlab.imaging.bounded import GZIP_MAGIC, check_bytes, check_size
from medvlab.imaging.dicom import Progress, is_dicom_file, list_files, read_dicom_file
from medvlab.imaging.nifti import FORMATS_HINT, read_nifti
from medvlab.imaging.series import read_dicom_series
from medvlab.imaging.types import MedImage

__all__ = ["FORMATS_HINT", "load", "load_bytes", "read_nifti", "read_photo", "sniff"]

logger = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")
GRAY_MODES = {"L": 1, "1": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}
"""PIL modes kept as one gray channel, with the bytes a pixel takes once decoded; others become RGB."""
_PIL_LIMIT_LOCK = threading.Lock()


def _name(source: Path | bytes, name: str | None) -> str:
    return name or (source.name if isinstance(source, Path) else "upload")


def sniff(source: Path | bytes, name: str | None = None) -> str:
    """Guess the format from the first bytes of a file or of bytes (falling back to the name).

    Returns dicom/png/jpeg/photo/nifti/gzip/unknown.
    """
    if isinstance(source, Path):
        with source.open("rb") as fh:
            head = fh.read(352)
    else:
        head = bytes(source[:352])
    shown = _name(source, name)
    name = shown.lower()
    if len(head) == 0:
        raise ImageLoadError(f"'{shown}' is empty (0 bytes).", "Upload the complete file again.")
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(GZIP_MAGIC):
        return "nifti" if name.endswith(".nii.gz") or name.endswith(".gz") else "gzip"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if head[4:8] in (b"n+2\x00", b"ni2\x00"):  # NIfTI-2 keeps its magic right after sizeof_hdr
        return "nifti"
    if len(head) >= 4 and int.from_bytes(head[:4], "little") == 348 and name.endswith((".hdr", ".nii")):
        return "nifti"
    if name.endswith((".dcm", ".dicom", ".ima")) or "." not in name:
        return "dicom"  # Part 10 without preamble, or a bare dataset: let pydicom try with force
    if name.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")):
        return "photo"
    return "unknown"


def load(
    source: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    limits: LoadLimits | None = None,
    progress: Progress | None = None,
    volume: int | None = None,
) -> MedImage:
    """Load a medical image from a path (file or folder) or a list of files forming one DICOM series.

    ``volume`` (0-based) picks one volume of a 4-D NIfTI (refused without it: never silently cut).

    Returns a :class:`~medvlab.imaging.types.MedImage`; raises a :class:`~medvlab.errors.ImageLoadError`
    subclass, with the fix in its message, for anything that is not a readable image.
    """
    limits = limits or LoadLimits()
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
        if len(paths) == 1:
            return load(paths[0], series_uid=series_uid, limits=limits, progress=progress)
        for p in paths:
            _check_file(p, limits)
        return read_dicom_series(paths, series_uid, limits, progress, what=f"the {len(paths)} files given")
    path = Path(source).expanduser()  # type: ignore[arg-type]
    if not path.exists():
        raise ImageLoadError(f"'{path}' does not exist.", "Check the path (and that the disk is mounted).")
    if path.is_dir():
        files = list_files(path)
        if not files:
            raise ImageLoadError(
                f"The folder '{path}' is empty.", "Point medvlab at a folder with DICOM files."
            )
        nifti = [f for f in files if f.name.lower().endswith((".nii", ".nii.gz"))]
        if nifti and not any(is_dicom_file(f) for f in files[:50]):
            if len(nifti) > 1:
                raise ImageLoadError(
                    f"'{path}' holds {len(nifti)} NIfTI files.", "Load one of them by its file name."
                )
            return load(nifti[0], limits=limits, volume=volume)
        return read_dicom_series(files, series_uid, limits, progress, what=f"'{path}'")
    _check_file(path, limits)
    return _read_one(path, path.name, limits, volume)


def load_bytes(
    data: bytes, filename: str = "upload", limits: LoadLimits | None = None, volume: int | None = None
) -> MedImage:
    """Load an image from bytes (an upload or a data URI); ``filename`` helps to tell NIfTI from gzip.

    Decoded in memory: nothing is written to disk (an upload may identify a patient).
    """
    limits = limits or LoadLimits()
    if len(data) > limits.max_file_mb * 2**20:
        raise ImageTooLargeError(
            f"The upload is {len(data) / 2**20:.1f} MiB.", f"Send at most {limits.max_file_mb} MiB."
        )
    suffix = "".join(Path(filename).suffixes[-2:]) or ".bin"
    return _read_one(bytes(data), f"upload{suffix}", limits, volume)


def _read_one(source: Path | bytes, name: str, limits: LoadLimits, volume: int | None = None) -> MedImage:
    """One file (a path, or its bytes) of whatever format its first bytes and name say."""
    kind = sniff(source, name)
    if kind == "dicom":
        return read_dicom_file(source, limits, name=name)
    if kind in ("png", "jpeg", "photo"):
        return read_photo(source, limits, name=name)
    if kind == "nifti":
        return read_nifti(source, limits, name=name, volume=volume)
    if kind == "gzip":
        raise UnsupportedFormatError(
            f"'{name}' is gzip-compressed but not named .nii.gz.", f"Rename it if it is NIfTI. {FORMATS_HINT}"
        )
    raise UnsupportedFormatError(f"'{name}' is not a recognised medical image.", FORMATS_HINT)


def _check_file(path: Path, limits: LoadLimits) -> None:
    size = path.stat().st_size
    if size > limits.max_file_mb * 2**20:
        raise ImageTooLargeError(
            f"'{path.name}' is {size / 2**20:.0f} MiB, above the limit of {limits.max_file_mb} MiB.",
            "Raise LoadLimits.max_file_mb if the file is genuine.",
        )


@contextmanager
def _pil_pixel_limit(limits: LoadLimits) -> Iterator[None]:
    """PIL's own decompression-bomb check (made while opening) uses our per-slice pixel limit.

    ``Image.MAX_IMAGE_PIXELS`` is global, so it is set under a lock, only while a file is opened.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limits.max_pixels_per_slice
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open_photo(fp: Path | BinaryIO, limits: LoadLimits) -> Image.Image:
    with _pil_pixel_limit(limits):
        return Image.open(fp)


def read_photo(source: Path | bytes, limits: LoadLimits, name: str | None = None) -> MedImage:
    """PNG/JPG/TIFF (e.g. an exported radiograph or a photo of a lesion), from a path or bytes."""
    name = _name(source, name)
    what = f"'{name}'"
    try:
        with _open_photo(source if isinstance(source, Path) else io.BytesIO(source), limits) as im:
            check_size(what, im.height, im.width, 1, limits)
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > limits.max_slices:
                raise ImageTooLargeError(
                    f"{what} has {n_frames} frames, above the limit of {limits.max_slices}.",
                    "Export the frame you want as its own image.",
                )
            if n_frames > 1:
                im.seek(0)  # only the first frame is decoded; it must fit the limits itself
                check_size(what, im.height, im.width, 1, limits)
            mode = im.mode
            check_bytes(what, im.width * im.height * GRAY_MODES.get(mode, 3), limits)
            im.load()
            if mode in GRAY_MODES:
                arr = np.asarray(im.convert("L") if mode == "1" else im)
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                pixels, photometric = arr[np.newaxis], "MONOCHROME2"
            else:
                pixels, photometric = np.asarray(im.convert("RGB"))[np.newaxis], "RGB"
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
    ) as exc:
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise ImageTooLargeError(
                f"{what} is a decompression bomb: {exc}", "Use a smaller image."
            ) from exc
        raise ImageLoadError(
            f"{what} could not be decoded as an image ({exc}).", f"The file may be truncated. {FORMATS_HINT}"
        ) from exc
    if n_frames > 1:
        logger.info("%s has %d frames; using the first", what, n_frames)
    suffix = Path(name).suffix.lower()
    fmt = "png" if suffix == ".png" else "jpeg" if suffix in (".jpg", ".jpeg") else "photo"
    return MedImage(pixels=np.ascontiguousarray(pixels), photometric=photometric, source_format=fmt)
