"""Limits that bind on the *decoded* size: header checks and decompression that stops at a budget.

A compressed input is only ever decompressed up to what its own header promises (plus a small
margin): a stream that holds more is a decompression bomb and is refused without being inflated.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, BinaryIO, cast

from isal import isal_zlib

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError

logger = logging.getLogger(__name__)

# ISA-L (the isal package) inflates about 2.5x faster than zlib: big .nii.gz volumes load that much sooner.
_ERRORS: tuple[type[BaseException], ...] = (zlib.error, cast(type[BaseException], isal_zlib.error))

MIB = 2**20
CHUNK = 4 * MIB
"""Most compressed bytes handed to the decompressor, and most bytes taken from it, per call."""
GZIP_MAGIC = b"\x1f\x8b"
BOMB_FIX = "Re-export the image from the source system; a genuine file decompresses to what it declares."


def margin(promised: int) -> int:
    """Slack allowed past what a header promises: 1 MiB plus 1%."""
    return MIB + promised // 100


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


def check_bytes(what: str, nbytes: int, limits: LoadLimits) -> None:
    """Refuse a decoded size above 8 bytes for each voxel LoadLimits.max_voxels allows.

    8 bytes a voxel is a float64 or a 16-bit RGBA volume at the voxel limit: nothing genuine that fits
    the voxel limit needs more, whatever its sample type.
    """
    cap = 8 * limits.max_voxels
    if nbytes > cap:
        raise ImageTooLargeError(
            f"{what} would decode to {nbytes / MIB:.0f} MiB, above the limit of {cap / MIB:.0f} MiB "
            "(8 bytes for each voxel LoadLimits.max_voxels allows).",
            "Crop or downsample the image, or raise LoadLimits.max_voxels if it is genuine.",
        )


def bomb(what: str, declared: int, detail: str = "") -> ImageTooLargeError:
    """The error for a stream that decodes to more than its header declares."""
    return ImageTooLargeError(
        f"{what} decompresses to more than its header declares ({declared} bytes{detail}); "
        "it looks like a decompression bomb and was not decoded.",
        BOMB_FIX,
    )


def corrupt(what: str, exc: BaseException | None = None) -> ImageLoadError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ImageLoadError(f"{what} is truncated or corrupt{detail}.", "Upload the complete file again.")


class Inflater:
    """Decompresses raw deflate (DICOM) or gzip (``.nii.gz``, every member) on demand.

    Nothing is decompressed beyond what :meth:`read_into` / :meth:`skip` ask for, so a small stream
    that would inflate to gigabytes costs only the bytes actually requested.
    """

    def __init__(self, data: bytes | bytearray | memoryview, *, gzip: bool, what: str) -> None:
        self._data = memoryview(data)
        self._what = what
        self._gzip = gzip
        self._dec: Any = isal_zlib.decompressobj(31 if gzip else -zlib.MAX_WBITS)
        self._pos = 0
        self.produced = 0
        self.finished = False
        """True once the stream has ended (or its input ran out)."""
        self.truncated = False
        """True when the input ran out before the end of the compressed stream."""

    def _next_input(self) -> bytes | memoryview:
        tail: bytes = self._dec.unconsumed_tail
        if tail:
            return tail
        piece = self._data[self._pos : self._pos + CHUNK]
        self._pos += len(piece)
        return piece

    def _member_ended(self) -> None:
        """At the end of a gzip member: go on with the next one, if one follows; else finish."""
        end = self._pos - len(self._dec.unused_data)
        if self._gzip and bytes(self._data[end : end + 2]) == GZIP_MAGIC:
            self._dec = isal_zlib.decompressobj(31)
            self._pos = end
            return
        if end < len(self._data):
            logger.debug("ignoring %d bytes after the end of the compressed stream", len(self._data) - end)
        self.finished = True

    def _pieces(self, n: int) -> Any:
        """Yield decompressed pieces totalling at most ``n`` bytes."""
        want = n
        while want > 0 and not self.finished:
            src = self._next_input()
            try:
                out: bytes = self._dec.decompress(src, min(want, CHUNK))
            except _ERRORS as exc:
                raise corrupt(self._what, exc) from exc
            if out:
                want -= len(out)
                self.produced += len(out)
                yield out
            if self._dec.eof:
                self._member_ended()
            elif not out and not src and not self._dec.unconsumed_tail:
                self.finished = self.truncated = True

    def read_into(self, out: BinaryIO, n: int) -> int:
        """Write up to ``n`` decompressed bytes to ``out``; fewer only at the end of the stream."""
        written = 0
        for piece in self._pieces(n):
            out.write(piece)
            written += len(piece)
        return written

    def read(self, n: int) -> bytes:
        return b"".join(self._pieces(n))

    def skip(self, n: int) -> int:
        """Decompress and discard up to ``n`` bytes; returns how many there were."""
        return sum(len(piece) for piece in self._pieces(n))
