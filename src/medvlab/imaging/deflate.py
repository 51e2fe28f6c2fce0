"""Reading DICOM datasets so that a deflated file inflates only as far as its header promises.

pydicom inflates a *Deflated Explicit VR Little Endian* dataset in one ``zlib.decompress`` before it
parses anything: a 1 MB file can inflate to gigabytes. Here the dataset is inflated incrementally:
first a bounded head, parsed up to the pixel data; then only the pixel bytes its Rows, Columns,
frames, samples and bits promise (plus a small margin). pydicom is handed the inflated dataset as
Explicit VR Little Endian, so it never inflates anything itself.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from medvlab.config import LoadLimits
from medvlab.errors import ImageTooLargeError
from medvlab.imaging.bounded import MIB, Inflater, bomb, check_bytes, check_size, corrupt, margin

logger = logging.getLogger(__name__)

HEAD = 4 * MIB
"""Inflated bytes parsed first, looking for the pixel data element."""
HEADER_MAX = 32 * MIB
"""Most inflated bytes allowed before the pixel data (the head grows 4x at a time up to this)."""
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
PIXEL_ELEMENT_HEADER = 12
"""Tag, VR, reserved and 4-byte length of an OB/OW/OF/OD element in Explicit VR."""


def open_dataset(
    source: Path | bytes,
    limits: LoadLimits,
    *,
    name: str,
    force: bool = True,
    stop_before_pixels: bool = False,
) -> Dataset:
    """``pydicom.dcmread`` of a path or of bytes, with deflated datasets inflated within limits."""
    fp: BinaryIO = source.open("rb") if isinstance(source, Path) else io.BytesIO(source)
    with fp:
        meta = _deflated_meta(fp)
        if meta is None:
            fp.seek(0)
            return pydicom.dcmread(fp, force=force, stop_before_pixels=stop_before_pixels)
        compressed = fp.read()
    return _read_deflated(compressed, meta, f"'{name}'", limits, stop_before_pixels)


def _deflated_meta(fp: BinaryIO) -> FileMetaDataset | None:
    """The file meta of a deflated dataset (``fp`` left just after it), or None for any other file."""
    try:
        read_preamble(fp, True)
        meta = _read_file_meta_info(fp)
    except Exception:  # not DICOM, or a damaged meta header: pydicom's own reading reports it
        return None
    return meta if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian else None


def _read_deflated(
    compressed: bytes, meta: FileMetaDataset, what: str, limits: LoadLimits, stop_before_pixels: bool
) -> Dataset:
    inflater = Inflater(compressed, gzip=False, what=what)
    out = io.BytesIO()
    out.write(_part10_prefix(meta))
    start = out.tell()
    head = HEAD
    try:
        while True:
            inflater.read_into(out, start + head - out.tell())
            found = _pixel_element(out, start)
            if found is not None or inflater.finished:
                break
            if head >= HEADER_MAX:
                raise ImageTooLargeError(
                    f"{what} inflates to more than {HEADER_MAX // MIB} MiB before any pixel data; "
                    "it looks like a decompression bomb and was not decoded.",
                    "Re-export the image from the source system.",
                )
            head = min(4 * head, HEADER_MAX)
        if found is not None and not stop_before_pixels:
            promised = _promised_bytes(found[0], what, limits)
            budget = found[1] + PIXEL_ELEMENT_HEADER + promised + margin(promised)
            inflater.read_into(out, budget + 1 - out.tell())
            if out.tell() > budget:
                raise bomb(what, promised, " of pixel data")
        if inflater.truncated:
            raise corrupt(f"The deflated data of {what}")
        out.seek(0)
        ds = pydicom.dcmread(out, force=True, stop_before_pixels=stop_before_pixels)
    finally:
        out.close()  # frees the inflated bytes now, even while an error is still referenced
    ds.buffer = None
    return ds


def _part10_prefix(meta: FileMetaDataset) -> bytes:
    """Preamble, ``DICM`` and the file meta, declaring the (now inflated) Explicit VR Little Endian."""
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=False)
    return b"\x00" * 128 + b"DICM" + fp.getvalue()


def _pixel_element(out: io.BytesIO, start: int) -> tuple[Dataset, int] | None:
    """(the header elements, offset of the pixel data element) once the inflated head reaches it."""
    end = out.tell()
    hits: list[int] = []

    def at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag in PIXEL_TAGS:
            hits.append(length)
            return True
        return False

    out.seek(start)
    try:
        # defer_size: big values (overlays, private blobs) are skipped, not copied, while probing
        ds = read_dataset(
            out, is_implicit_VR=False, is_little_endian=True, stop_when=at_pixels, defer_size=4096
        )
        at = out.tell()
    except Exception:  # the head ends inside an element: inflate more, or let pydicom report it
        return None
    finally:
        out.seek(end)
    return (ds, at) if hits else None


def _promised_bytes(ds: Dataset, what: str, limits: LoadLimits) -> int:
    """Pixel bytes the header declares (0 if it declares no usable size), after the size limits."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 8) or 8)
    except (AttributeError, TypeError, ValueError):
        logger.debug("%s: no usable Rows/Columns before the pixel data", what)
        return 0
    check_size(what, rows, cols, frames, limits)
    samples, bits = min(max(samples, 1), 4), min(max(bits, 1), 64)
    promised = (rows * cols * frames * samples * bits + 7) // 8
    check_bytes(what, promised, limits)
    return promised
