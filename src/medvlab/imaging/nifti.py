"""NIfTI-1/2 volumes from a path or bytes; a ``.nii.gz`` is decompressed only up to its first 3-D volume.

The header is decompressed first; its shape, data type and ``vox_offset`` say how many bytes the
first volume takes, and the gzip stream is decompressed up to exactly there (ISA-L, in chunks), never
further. A 3-D file whose stream goes on past what its header promises (plus a small margin) is a
decompression bomb and is refused.

A 4-D (or higher) file holds several volumes (fMRI, DWI, phases): one is read only when the caller names it
(``volume=k``, 0-based; ``--volume`` on the CLI) — it is never silently cut to its first volume. For a
``.nii.gz`` only the bytes up to the end of that volume are decompressed, and those before it discarded.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError
from medvlab.imaging.bounded import GZIP_MAGIC, Inflater, bomb, check_bytes, check_size, corrupt, margin
from medvlab.imaging.types import MedImage

logger = logging.getLogger(__name__)

FORMATS_HINT = "medvlab reads PNG/JPG, DICOM files, DICOM series folders and NIfTI (.nii/.nii.gz)."
HEADER_BYTES = 540
"""Enough for a NIfTI-2 header (NIfTI-1 needs 348)."""


def _single_file_class(head: bytes) -> Any:
    """Nifti1Image / Nifti2Image for a single-file (``n+1``/``n+2``) header, else None."""
    size = head[:4]
    if size in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c") and head[344:348] == b"n+1\x00":
        return nib.Nifti1Image
    if size in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c") and head[4:8] == b"n+2\x00":
        return nib.Nifti2Image
    return None


def _check_shape(shape: tuple[int, ...], what: str, limits: LoadLimits) -> None:
    if len(shape) < 2:
        raise ImageLoadError(f"{what} has shape {shape}; an image needs 2 or 3 dimensions.", FORMATS_HINT)
    check_size(what, shape[1], shape[0], shape[2] if len(shape) > 2 else 1, limits)


def n_volumes(shape: tuple[int, ...]) -> int:
    """How many 3-D volumes a NIfTI of this shape holds (dimensions past the third, flattened)."""
    return math.prod(shape[3:]) if len(shape) > 3 else 1


def pick_volume(shape: tuple[int, ...], volume: int | None, what: str) -> int:
    """The 0-based volume to read: refuses a multi-volume file without a choice, or a choice out of range."""
    count = n_volumes(shape)
    if volume is None:
        if count > 1:
            raise ImageLoadError(
                f"{what} is a {len(shape)}-D NIfTI {shape} holding {count} volumes; medvlab shows one "
                "3-D volume at a time and will not pick one for you.",
                f"Choose one with --volume N (0 to {count - 1}), or extract it (e.g. fslroi) and load "
                "that 3-D file.",
            )
        return 0
    if not 0 <= volume < count:
        raise ImageLoadError(
            f"Volume {volume} was asked of {what}, which holds {count} volume(s) {shape}.",
            f"Choose --volume between 0 and {count - 1}.",
        )
    return volume


def _from_gzip(data: bytes, what: str, limits: LoadLimits, volume: int | None = None) -> Any:
    """The image of a gzip-compressed single-file NIfTI, decompressing only up to the chosen volume."""
    inflater = Inflater(data, gzip=True, what=what)
    head = inflater.read(HEADER_BYTES)
    cls = _single_file_class(head)
    if cls is None:
        return None
    try:
        header = cls.header_class.from_fileobj(io.BytesIO(head))
        shape = tuple(int(s) for s in header.get_data_shape())
        itemsize = int(header.get_data_dtype().itemsize)
        offset = int(header.get_data_offset())
    except Exception as exc:  # nibabel raises many types for broken headers
        raise ImageLoadError(f"{what} is not a readable NIfTI file ({exc}).", FORMATS_HINT) from exc
    _check_shape(shape, what, limits)
    nbytes = math.prod(shape[:3]) * itemsize
    check_bytes(what, nbytes, limits)
    k = pick_volume(shape, volume, what)
    if k > 0:
        return _later_volume(inflater, head, header, shape, offset, nbytes, k, what)
    need = offset + nbytes
    out = io.BytesIO()
    out.write(head)
    inflater.read_into(out, need - out.tell())
    if out.tell() < need:
        out.close()
        raise corrupt(what)
    if len(shape) <= 3:  # nothing may follow the volume; later volumes of a 4-D file are never read
        extra = out.tell() - need + inflater.skip(margin(nbytes) + 1)
        if extra > margin(nbytes):
            out.close()
            raise bomb(what, need, f", {shape} {header.get_data_dtype()} voxels")
    return cls.from_bytes(out.getvalue())


def _later_volume(
    inflater: Inflater,
    head: bytes,
    header: Any,
    shape: tuple[int, ...],
    offset: int,
    nbytes: int,
    k: int,
    what: str,
) -> Any:
    """Volume ``k`` > 0 of a 4-D ``.nii.gz`` as a 3-D image: the volumes before it are decompressed and
    discarded (memory stays at one volume), nothing after it is decompressed."""
    if len(head) < offset:  # extensions between the header and the voxels
        head += inflater.read(offset - len(head))
        if len(head) < offset:
            raise corrupt(what)
    before, start = head[offset:], k * nbytes  # voxel bytes already read; where volume k starts in them
    if len(before) >= start:
        voxels = before[start:]
    else:
        if inflater.skip(start - len(before)) < start - len(before):
            raise corrupt(what)
        voxels = b""
    voxels = (voxels + inflater.read(max(0, nbytes - len(voxels))))[:nbytes]
    if len(voxels) < nbytes:
        raise corrupt(what)
    header = header.copy()
    header.set_data_shape(shape[:3])
    block = header.binaryblock
    cls = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    img = cls.from_bytes(block + head[len(block) : offset] + voxels)
    img.medvlab_declared = (shape, k)  # type: ignore[attr-defined]  # read_nifti reports them
    return img


def _open(source: Path | bytes, what: str, limits: LoadLimits, volume: int | None = None) -> Any:
    if isinstance(source, Path):
        with source.open("rb") as fh:
            magic = fh.read(2)
        img = _from_gzip(source.read_bytes(), what, limits, volume) if magic == GZIP_MAGIC else None
        return img if img is not None else nib.load(str(source))  # .nii, .hdr/.img pairs: lazily
    if source[:2] == GZIP_MAGIC:
        img = _from_gzip(source, what, limits, volume)
    else:
        cls = _single_file_class(bytes(source[:HEADER_BYTES]))
        img = cls.from_bytes(source) if cls is not None else None
    if img is None:
        raise ImageLoadError(f"{what} is not a single-file NIfTI (.nii/.nii.gz).", FORMATS_HINT)
    return img


def _finite(data: np.ndarray, what: str, meta: dict[str, object]) -> np.ndarray:
    """Refuse a volume without a finite value; replace NaN/inf (e.g. from scl_slope/scl_inter) otherwise."""
    if data.dtype.kind != "f" or (np.isfinite(data.min()) and np.isfinite(data.max())):
        return data
    finite = np.isfinite(data)
    good = int(np.count_nonzero(finite))
    if good == 0:
        raise ImageLoadError(
            f"{what} has no finite voxel values: its scaling (scl_slope/scl_inter) or data give only "
            "inf or NaN.",
            "Fix scl_slope/scl_inter in the header (e.g. with nibabel) or re-export the volume.",
        )
    lo, hi = float(data[finite].min()), float(data[finite].max())
    logger.warning("%s: %d voxels are NaN or infinite; shown as %g..%g", what, data.size - good, lo, hi)
    meta["nonfinite_voxels"] = int(data.size - good)
    return np.nan_to_num(data, copy=not data.flags.writeable, nan=lo, posinf=hi, neginf=lo)


def read_nifti(
    source: Path | bytes, limits: LoadLimits, name: str | None = None, volume: int | None = None
) -> MedImage:
    """NIfTI-1/2 volume, reoriented so axes point (superior, posterior, left) like axial DICOM.

    ``volume`` (0-based) picks one volume of a 4-D file; a multi-volume file without it is refused."""
    name = name or (source.name if isinstance(source, Path) else "upload.nii")
    what = f"'{name}'"
    try:
        img: Any = _open(source, what, limits, volume)
        if not isinstance(img, nib.spatialimages.SpatialImage):  # e.g. CIFTI-2, also NIfTI-2 based
            raise ImageLoadError(f"{what} is a {type(img).__name__}, not an image volume.", FORMATS_HINT)
        shape = tuple(int(s) for s in img.shape)
    except ImageLoadError:
        raise
    except Exception as exc:  # nibabel raises many types for broken headers
        raise ImageLoadError(f"{what} is not a readable NIfTI file ({exc}).", FORMATS_HINT) from exc
    _check_shape(shape, what, limits)
    declared, k = getattr(img, "medvlab_declared", None) or (shape, pick_volume(shape, volume, what))
    meta: dict[str, object] = {"nifti_shape": list(declared)}
    if len(declared) > 3:
        meta["nifti_volume"] = k
        logger.info(
            "%s is %d-D %s; reading volume %d of %d", what, len(declared), declared, k, n_volumes(declared)
        )
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # scaling may overflow: handled below
            if len(shape) > 3:
                index = tuple(int(i) for i in np.unravel_index(k, shape[3:], order="F"))
                data = np.asarray(img.dataobj[(slice(None),) * 3 + index])
            else:
                data = np.asarray(img.dataobj)
            if data.dtype == np.float64:
                data = data.astype(np.float32)
            data = _finite(data, what, meta)
    except ImageLoadError:
        raise
    except Exception as exc:  # truncated/corrupt data or a header pointing outside the file: many types
        if isinstance(exc, MemoryError):
            raise
        raise ImageLoadError(
            f"{what} is truncated or corrupt ({exc}).", "Upload the complete file again."
        ) from exc
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
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
        logger.warning("%s has an unusable affine (%s); showing it in voxel order", what, exc)
        affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    pixels = data.transpose(2, 1, 0)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras[:, [2, 1, 0, 3]]
    spacing = tuple(float(np.linalg.norm(affine_lps[:3, i])) for i in range(3))
    header = img.header
    descrip = header.get("descrip") if hasattr(header, "get") else None
    if descrip is not None and np.asarray(descrip).size:
        text = np.asarray(descrip).tobytes().split(b"\x00")[0].decode("latin-1").strip()
        if text:
            meta["description"] = text
    return MedImage(
        pixels=pixels,
        spacing=(spacing[0], spacing[1], spacing[2]),
        affine=affine_lps,
        modality=guess_nifti_modality(pixels),
        photometric="MONOCHROME2",
        source_format="nifti",
        metadata=meta,
    )


def guess_nifti_modality(pixels: np.ndarray) -> str:
    """NIfTI has no modality field: call it CT when values look like HU (air near -1000), else MR."""
    sample = pixels[:: max(1, pixels.shape[0] // 8), ::4, ::4]
    return "CT" if sample.size and float(sample.min()) <= -900 and float(sample.max()) >= 200 else "MR"
