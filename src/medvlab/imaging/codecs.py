"""Encapsulated DICOM pixel data: each frame's own codec header is checked against the DICOM header.

A JPEG, JPEG-LS, JPEG 2000 (HTJ2K included) or RLE decoder sizes its output from the frame it is
given, not from Rows/Columns: a 2 kB JPEG frame whose SOF declares 60000x60000 inside a file that
says 128x128 would make the decoder allocate gigabytes. These checks run before any decoder does.
"""

from __future__ import annotations

import itertools
import logging
from struct import unpack_from
from typing import Any

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError
from medvlab.imaging.bounded import BOMB_FIX, check_size

logger = logging.getLogger(__name__)

JPEG_SYNTAXES = frozenset(
    {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless}
)
J2K_SYNTAXES = frozenset({JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB, 0xF7})
"""Start-of-frame markers of non-hierarchical JPEG (0xF7: JPEG-LS)."""
JPEG_HIERARCHICAL = frozenset({0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF, 0xDE})
"""Differential SOFs and DHP: hierarchical JPEG, whose true size is not in the first frame header."""
JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
FIX = "Re-export the image from the source system; its compressed frames do not match its DICOM header."

Header = tuple[int, int, int]
"""(rows, columns, components) a frame's codec header declares."""


def jpeg_header(frame: bytes) -> Header | str:
    """Rows, columns and components of a JPEG / JPEG-LS frame's SOF, or why it cannot be read."""
    if frame[:2] != b"\xff\xd8":
        return "it has no JPEG start-of-image marker"
    pos, end = 2, len(frame)
    while pos < end:
        if frame[pos] != 0xFF:
            return "it has bytes outside a marker segment before its frame header"
        while pos < end and frame[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = frame[pos]
        pos += 1
        if marker in JPEG_HIERARCHICAL:
            return "it is hierarchical JPEG, which DICOM does not use"
        if marker in JPEG_SOF:
            if pos + 8 > end:
                break
            rows, cols, comps = unpack_from(">HHB", frame, pos + 3)
            return rows, cols, comps
        if marker in (0xDA, 0xD9):
            return "its scan starts before any frame header"
        if marker in JPEG_STANDALONE:
            continue
        if pos + 2 > end:
            break
        (length,) = unpack_from(">H", frame, pos)
        if length < 2:
            return "it has a marker segment of impossible length"
        pos += length
    return "its JPEG header is truncated"


def j2k_header(frame: bytes) -> Header | str:
    """Rows, columns and components of a JPEG 2000 (or HTJ2K) frame's SIZ, or why it cannot be read."""
    pos, end = 0, len(frame)
    if frame.startswith(JP2_SIGNATURE):  # a JP2 file: find the contiguous codestream box
        while True:
            if pos + 8 > end:
                return "its JP2 wrapper has no codestream box"
            length, box = unpack_from(">I4s", frame, pos)
            head = 8
            if length == 1 and pos + 16 <= end:
                (length,) = unpack_from(">Q", frame, pos + 8)
                head = 16
            elif length == 0:
                length = end - pos
            if box == b"jp2c":
                pos += head
                break
            if length < head:
                return "its JP2 wrapper has a box of impossible length"
            pos += length
    if frame[pos : pos + 4] != b"\xff\x4f\xff\x51" or pos + 44 > end:
        return "it has no JPEG 2000 SOC/SIZ header"
    xsiz, ysiz, x0, y0 = unpack_from(">IIII", frame, pos + 8)
    (comps,) = unpack_from(">H", frame, pos + 40)
    if xsiz <= x0 or ysiz <= y0:
        return "its SIZ header declares an empty image"
    return ysiz - y0, xsiz - x0, comps


def rle_problem(frame: bytes, samples: int, bits_allocated: int) -> str | None:
    """Why an RLE frame's 64-byte header is inconsistent with the DICOM header, or None."""
    if len(frame) < 64:
        return "it is shorter than the 64-byte RLE header"
    count, *offsets = unpack_from("<16I", frame, 0)
    expected = samples * max(1, (bits_allocated + 7) // 8)
    if not 1 <= count <= min(15, expected):
        return f"its RLE header declares {count} segments where the DICOM header allows {expected}"
    used = offsets[:count]
    if used[0] != 64 or any(b <= a for a, b in itertools.pairwise(used)) or used[-1] >= len(frame):
        return "its RLE segment offsets point outside the frame"
    if any(offsets[count:]):
        return "its RLE header lists more segment offsets than segments"
    return None


def rle_longest_segment(frame: bytes) -> int:
    """Length of the longest segment of an RLE frame whose header :func:`rle_problem` accepted."""
    count, *offsets = unpack_from("<16I", frame, 0)
    bounds = [*offsets[:count], len(frame)]
    return max(b - a for a, b in itertools.pairwise(bounds))


def _ints(ds: Dataset) -> tuple[int, int, int, int, int]:
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 8) or 8)
    return rows, cols, frames, samples, bits


def check_frames(ds: Dataset, what: str, limits: LoadLimits) -> dict[str, Any]:
    """Check every encoded frame the decoder would decode; return pixel_array options to decode with.

    Raises :class:`ImageTooLargeError` for a frame that declares more pixels than the DICOM header, and
    :class:`ImageLoadError` for an unreadable codec header or more frames than ``NumberOfFrames``.
    """
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None or not ts.is_encapsulated or "PixelData" not in ds:
        return {}
    if ts not in JPEG_SYNTAXES and ts not in J2K_SYNTAXES and ts != RLELossless:
        return {}  # no decoder is installed for it: pydicom refuses it without decoding anything
    rows, cols, frames, samples, bits = _ints(ds)
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    encoded = generate_frames(ds.PixelData, number_of_frames=frames, extended_offsets=extended)
    count = 0
    while True:
        try:
            frame = next(encoded)
        except StopIteration:
            break
        except Exception as exc:  # the decoder walks the same fragments and fails at the same place
            logger.debug("%s: stopped checking frames at %d: %s", what, count, exc)
            break
        count += 1
        if count > frames:
            check_size(what, rows, cols, count, limits)
            raise ImageLoadError(f"{what} holds more encoded frames than its NumberOfFrames ({frames}).", FIX)
        _check_frame(frame, ts, what, count, (rows, cols, samples, bits))
    if ts != RLELossless:
        return {}
    # pylibjpeg-rle writes into a buffer of Rows x Columns and stops at its end; pydicom's own RLE
    # decoder (the fallback) grows its output with the stream, so it is never used here.
    from pydicom.pixels.decoders.pylibjpeg import is_available

    if not is_available(RLELossless):
        raise ImageLoadError(
            f"{what} is RLE-compressed and pylibjpeg-rle is not installed.",
            "Install pylibjpeg-rle (a medvlab dependency): pip install pylibjpeg-rle.",
        )
    return {"decoding_plugin": "pylibjpeg"}


def _check_frame(frame: bytes, ts: str, what: str, index: int, dims: tuple[int, int, int, int]) -> None:
    rows, cols, samples, bits = dims
    where = f"Frame {index} of {what}"
    if ts == RLELossless:
        problem = rle_problem(frame, samples, bits)
        if problem is not None:
            raise ImageLoadError(f"{where} cannot be decoded safely: {problem}.", FIX)
        # each segment holds one byte of Rows x Columns pixels: even 1-byte literal runs (2 bytes each,
        # the costliest valid encoding) need at most twice that
        longest = rle_longest_segment(frame)
        if longest > 2 * rows * cols + 64:
            raise ImageTooLargeError(
                f"{where} has an RLE segment of {longest} bytes, more than any encoding of {rows}x{cols} "
                "pixels needs; it looks like a decompression bomb and was not decoded.",
                BOMB_FIX,
            )
        return
    header = jpeg_header(frame) if ts in JPEG_SYNTAXES else j2k_header(frame)
    if isinstance(header, str):
        raise ImageLoadError(f"{where} cannot be decoded safely: {header}.", FIX)
    f_rows, f_cols, comps = header
    if f_rows == 0 or f_cols == 0:
        raise ImageLoadError(f"{where} declares no size in its codec header ({f_rows}x{f_cols}).", FIX)
    if f_rows > rows or f_cols > cols or comps > max(samples, 1):
        raise ImageTooLargeError(
            f"{where} declares {f_rows}x{f_cols} pixels with {comps} components in its codec header, "
            f"but the DICOM header says {rows}x{cols} with {samples}; it looks like a decompression bomb "
            "and was not decoded.",
            BOMB_FIX,
        )
