"""``load()``: one entry point for PNG/JPG, DICOM files, DICOM series folders and NIfTI volumes."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from isal import igzip
from PIL import Image, UnidentifiedImageError

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError, UnsupportedFormatError
from medvlab.imaging.dicom import (
    Progress,
    check_size,
    is_dicom_file,
    list_files,
    read_dicom_file,
    read_dicom_series,
)
from medvlab.imaging.types import MedImage

logger = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GZIP_MAGIC = b"\x1f\x8b"
NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")
FORMATS_HINT = "medvlab reads PNG/JPG, DICOM files, DICOM series folders and NIfTI (.nii/.nii.gz)."


def sniff(path: Path) -> str:
    """Guess the format from the file's first bytes (falling back to its name): dicom/png/jpeg/nifti/..."""
    with path.open("rb") as fh:
        head = fh.read(352)
    name = path.name.lower()
    if len(head) == 0:
        raise ImageLoadError(f"'{path.name}' is empty (0 bytes).", "Upload the complete file again.")
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
) -> MedImage:
    """Load a medical image from a path (file or folder) or a list of files forming one DICOM series.

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
            return load(nifti[0], limits=limits)
        return read_dicom_series(files, series_uid, limits, progress, what=f"'{path}'")
    _check_file(path, limits)
    kind = sniff(path)
    if kind == "dicom":
        return read_dicom_file(path, limits)
    if kind in ("png", "jpeg", "photo"):
        return read_photo(path, limits)
    if kind == "nifti":
        return read_nifti(path, limits)
    if kind == "gzip":
        raise UnsupportedFormatError(
            f"'{path.name}' is gzip-compressed but not named .nii.gz.",
            f"Rename it if it is NIfTI. {FORMATS_HINT}",
        )
    raise UnsupportedFormatError(f"'{path.name}' is not a recognised medical image.", FORMATS_HINT)


def load_bytes(data: bytes, filename: str = "upload", limits: LoadLimits | None = None) -> MedImage:
    """Load an image from bytes (an upload or a data URI); ``filename`` helps to tell NIfTI from gzip."""
    limits = limits or LoadLimits()
    if len(data) > limits.max_file_mb * 2**20:
        raise ImageTooLargeError(
            f"The upload is {len(data) / 2**20:.1f} MiB.", f"Send at most {limits.max_file_mb} MiB."
        )
    suffix = "".join(Path(filename).suffixes[-2:]) or ".bin"
    with tempfile.TemporaryDirectory(prefix="medvlab-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        image = load(path, limits=limits)
    return image


def _check_file(path: Path, limits: LoadLimits) -> None:
    size = path.stat().st_size
    if size > limits.max_file_mb * 2**20:
        raise ImageTooLargeError(
            f"'{path.name}' is {size / 2**20:.0f} MiB, above the limit of {limits.max_file_mb} MiB.",
            "Raise LoadLimits.max_file_mb if the file is genuine.",
        )


def read_photo(path: Path, limits: LoadLimits) -> MedImage:
    """PNG/JPG/TIFF (e.g. an exported radiograph or a photo of a lesion)."""
    try:
        with Image.open(path) as im:
            check_size(f"'{path.name}'", im.height, im.width, 1, limits)
            n_frames = getattr(im, "n_frames", 1)
            im.load()
            mode = im.mode
            if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im)
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                pixels, photometric = arr[np.newaxis], "MONOCHROME2"
            else:
                pixels, photometric = np.asarray(im.convert("RGB"))[np.newaxis], "RGB"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise ImageTooLargeError(
                f"'{path.name}' is a decompression bomb: {exc}", "Use a smaller image."
            ) from exc
        raise ImageLoadError(
            f"'{path.name}' could not be decoded as an image ({exc}).",
            f"The file may be truncated. {FORMATS_HINT}",
        ) from exc
    if n_frames > 1:
        logger.info("%s has %d frames; using the first", path.name, n_frames)
    fmt = (
        "png"
        if path.suffix.lower() == ".png"
        else "jpeg"
        if path.suffix.lower() in (".jpg", ".jpeg")
        else "photo"
    )
    return MedImage(pixels=np.ascontiguousarray(pixels), photometric=photometric, source_format=fmt)


def read_nifti(path: Path, limits: LoadLimits) -> MedImage:
    """NIfTI-1/2 volume, reoriented so axes point (superior, posterior, left) like axial DICOM."""
    try:
        img: Any = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises many types for broken headers
        raise ImageLoadError(f"'{path.name}' is not a readable NIfTI file ({exc}).", FORMATS_HINT) from exc
    if len(shape) < 2:
        raise ImageLoadError(
            f"'{path.name}' has shape {shape}; an image needs 2 or 3 dimensions.", FORMATS_HINT
        )
    extra = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    check_size(f"'{path.name}'", shape[1], shape[0], shape[2] if len(shape) > 2 else 1, limits)
    try:
        if path.name.lower().endswith(".gz") and hasattr(type(img), "from_bytes"):
            # nibabel streams .gz through Python's gzip in small reads; one-shot decompression with
            # ISA-L (the isal package) is about 2.5x faster on a 300x512x512 CT.
            img = type(img).from_bytes(igzip.decompress(path.read_bytes()))
        if len(shape) > 3:
            logger.info("%s is %d-D (%s); using the first volume of %d", path.name, len(shape), shape, extra)
            data = np.asarray(img.dataobj[(slice(None),) * 3 + (0,) * (len(shape) - 3)])
        else:
            data = np.asarray(img.dataobj)
    except Exception as exc:  # truncated/corrupt data or a header pointing outside the file: many types
        if isinstance(exc, MemoryError):
            raise
        raise ImageLoadError(
            f"'{path.name}' is truncated or corrupt ({exc}).", "Upload the complete file again."
        ) from exc
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if data.dtype == bool:
        data = data.astype(np.uint8)

    # Reorient voxel axes (i, j, k) to point Left, Posterior, Superior; then put k first: (slice, row, col).
    affine_ras = img.affine if img.affine is not None else np.eye(4)
    try:
        current = nib.orientations.io_orientation(affine_ras)
        target = nib.orientations.axcodes2ornt(("L", "P", "S"))
        transform = nib.orientations.ornt_transform(current, target)
        data = nib.orientations.apply_orientation(data, transform)
        affine_ras = affine_ras @ nib.orientations.inv_ornt_aff(transform, data.shape)
    except (ValueError, np.linalg.LinAlgError) as exc:
        # A degenerate qform/sform: the voxels are still worth looking at, the geometry is not known.
        logger.warning("%s has an unusable affine (%s); showing it in voxel order", path.name, exc)
        affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    pixels = data.transpose(2, 1, 0)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras[:, [2, 1, 0, 3]]
    spacing = tuple(float(np.linalg.norm(affine_lps[:3, i])) for i in range(3))
    header = img.header
    descrip = header.get("descrip") if hasattr(header, "get") else None
    meta: dict[str, object] = {"nifti_shape": list(shape)}
    if descrip is not None and np.asarray(descrip).size:
        text = np.asarray(descrip).tobytes().split(b"\x00")[0].decode("latin-1").strip()
        if text:
            meta["description"] = text
    return MedImage(
        pixels=pixels,
        spacing=(spacing[0], spacing[1], spacing[2]),
        affine=affine_lps,
        modality=_guess_nifti_modality(pixels),
        photometric="MONOCHROME2",
        source_format="nifti",
        metadata=meta,
    )


def _guess_nifti_modality(pixels: np.ndarray) -> str:
    """NIfTI has no modality field: call it CT when values look like HU (air near -1000), else MR."""
    sample = pixels[:: max(1, pixels.shape[0] // 8), ::4, ::4]
    return "CT" if sample.size and float(sample.min()) <= -900 and float(sample.max()) >= 200 else "MR"
