"""Decompression bombs: limits bind on the decoded size, before or while decoding, and memory stays bounded.

Each bomb is built here from a real test file (pydicom's, nibabel's) and would inflate to hundreds of
megabytes (or, for a lying JPEG frame, gigabytes) if it were decoded whole.
"""

from __future__ import annotations

import gc
import gzip
import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels import apply_modality_lut
from pydicom.uid import DeflatedExplicitVRLittleEndian

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError
from medvlab.imaging import load, load_bytes

MIB = 2**20
BOUND = 64 * MIB
"""Most Python memory any bomb below may cost (tracemalloc peak): a fraction of what it inflates to."""


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """(result or exception, peak traced bytes during ``fn``, traced bytes still held after it)."""
    gc.collect()
    tracemalloc.start()
    try:
        try:
            result: Any = fn()
        except Exception as exc:
            result = exc
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, held


def assert_bounded_error(
    fn: Callable[[], Any], error: type[Exception], match: str, bound: int = BOUND, kept: int = 8 * MIB
) -> int:
    """``fn`` raises ``error`` (with a fix) within ``bound`` bytes and, after, holds less than ``kept``."""
    outcome, peak, held = peak_bytes(fn)
    assert isinstance(outcome, error), outcome
    assert match in str(outcome), str(outcome)
    assert outcome.fix  # type: ignore[attr-defined]
    assert peak < bound, f"peak {peak / MIB:.1f} MiB"
    assert held < kept, f"{held / MIB:.1f} MiB still held after the error"  # a failure frees its memory
    return peak


# --- deflated DICOM -----------------------------------------------------------------------------


def deflated_dicom(src: Path, pixel_bytes: int | None = None, level: int = 9) -> bytes:
    """``src`` re-encoded as Deflated Explicit VR Little Endian; ``pixel_bytes`` zeros replace its pixels."""
    ds = pydicom.dcmread(src)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    if pixel_bytes is not None:
        del ds.PixelData
    write_dataset(body, ds)
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [deflate.compress(body.getvalue())]
    if pixel_bytes is not None:
        out.append(deflate.compress(b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", pixel_bytes)))
        zeros = bytes(MIB)
        for _ in range(pixel_bytes // MIB):
            out.append(deflate.compress(zeros))
    out.append(deflate.flush())
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta)
    return b"\x00" * 128 + b"DICM" + meta.getvalue() + b"".join(out)


@pytest.fixture(scope="module")
def dicom_bomb(dicom_files: dict[str, Path]) -> bytes:
    """CT_small (128x128, 32 kB of pixels) whose deflated pixel data holds 200 MB of zeros."""
    data = deflated_dicom(dicom_files["CT_small.dcm"], pixel_bytes=200 * MIB)
    assert len(data) < 400_000
    return data


def test_deflated_dicom_bomb_is_refused_while_inflating(dicom_bomb: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bomb.dcm"
    path.write_bytes(dicom_bomb)
    assert_bounded_error(lambda: load(path), ImageTooLargeError, "decompression bomb")
    assert_bounded_error(lambda: load_bytes(dicom_bomb, "bomb.dcm"), ImageTooLargeError, "declares")


def test_deflated_bomb_in_a_series_folder_is_refused(
    dicom_bomb: bytes, dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    from tests.helpers import write_series

    write_series(dicom_files["CT_small.dcm"], tmp_path / "s", n=3)
    (tmp_path / "s" / "zz_bomb.dcm").write_bytes(dicom_bomb)
    assert_bounded_error(lambda: load(tmp_path / "s"), ImageTooLargeError, "decompression bomb")


def test_deflated_header_that_never_reaches_pixels_is_refused(dicom_files: dict[str, Path]) -> None:
    ds = pydicom.dcmread(dicom_files["CT_small.dcm"])
    del ds.PixelData
    ds.add_new(0x00091010, "OB", bytes(100 * MIB))  # a private blob before where pixels would be
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    del ds
    data = buf.getvalue()
    assert_bounded_error(lambda: load_bytes(data, "x.dcm"), ImageTooLargeError, "before any pixel data")


def test_truncated_deflated_dicom_gets_clear_error(dicom_files: dict[str, Path]) -> None:
    data = deflated_dicom(dicom_files["CT_small.dcm"])
    with pytest.raises(ImageLoadError, match="truncated or corrupt") as info:
        load_bytes(data[: len(data) - 200], "cut.dcm")
    assert info.value.fix


@pytest.mark.parametrize("name", ["CT_small.dcm", "emri_small.dcm", "SC_rgb.dcm", "OBXXXX1A.dcm"])
def test_genuine_deflated_files_load_the_same_pixels(dicom_files: dict[str, Path], name: str) -> None:
    reference = load(dicom_files[name])
    image = load_bytes(deflated_dicom(dicom_files[name]), name)
    assert image.pixels.dtype == reference.pixels.dtype
    np.testing.assert_array_equal(image.pixels, reference.pixels)
    np.testing.assert_allclose(image.affine, reference.affine)


def test_pydicoms_deflated_file_still_loads(dicom_files: dict[str, Path]) -> None:
    path = dicom_files["image_dfl.dcm"]
    np.testing.assert_array_equal(load(path).pixels[0], pydicom.dcmread(path).pixel_array)


def test_genuine_deflated_file_larger_than_the_first_inflated_head(
    dicom_files: dict[str, Path], tmp_path: Path
) -> None:
    ds = pydicom.dcmread(dicom_files["693_UNCI.dcm"])  # a real 512x512 CT slice
    frames = np.stack([ds.pixel_array + np.int16(k) for k in range(24)])  # 12 MiB of pixels
    ds.NumberOfFrames = len(frames)
    ds.PixelData = frames.tobytes()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "big_dfl.dcm", enforce_file_format=True)
    image = load(tmp_path / "big_dfl.dcm")
    assert image.pixels.shape == (24, 512, 512)
    np.testing.assert_array_equal(image.pixels[5], load(dicom_files["693_UNCI.dcm"]).pixels[0] + 5)


# --- encapsulated frames whose codec header lies --------------------------------------------------


def _patched(src: Path, marker: bytes, offset: int, fmt: str, values: tuple[int, ...]) -> bytes:
    """``src`` with the codec header at ``marker`` in its pixel data rewritten to declare ``values``."""
    ds = pydicom.dcmread(src)
    data = bytearray(ds.PixelData)
    at = data.find(marker)
    assert at > 0
    struct.pack_into(fmt, data, at + offset, *values)
    ds.PixelData = bytes(data)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


HUGE_FRAMES = {
    # JPEG baseline: SOF0 height, width
    "SC_rgb_jpeg_dcmtk.dcm": (b"\xff\xc0", 5, ">HH", (60000, 60000)),
    # JPEG-LS: SOF55 height, width
    "MR_small_jpeg_ls_lossless.dcm": (b"\xff\xf7", 5, ">HH", (60000, 60000)),
    # JPEG lossless (process 14): SOF3 height, width
    "JPEG-LL.dcm": (b"\xff\xc3", 5, ">HH", (60000, 60000)),
    # JPEG 2000: SIZ Xsiz, Ysiz (image offsets 0)
    "MR_small_jp2klossless.dcm": (b"\xff\x4f\xff\x51", 8, ">II", (60000, 60000)),
}


@pytest.mark.parametrize("name", list(HUGE_FRAMES))
def test_frame_declaring_more_pixels_than_the_dicom_header_is_not_decoded(
    dicom_files: dict[str, Path], name: str
) -> None:
    marker, offset, fmt, values = HUGE_FRAMES[name]
    data = _patched(dicom_files[name], marker, offset, fmt, values)
    assert_bounded_error(lambda: load_bytes(data, name), ImageTooLargeError, "declares 60000x60000")


def test_jpeg_component_count_above_samples_is_refused(dicom_files: dict[str, Path]) -> None:
    data = _patched(dicom_files["MR_small_jpeg_ls_lossless.dcm"], b"\xff\xf7", 9, ">B", (3,))
    with pytest.raises(ImageTooLargeError, match="3 components"):
        load_bytes(data, "x.dcm")


def test_more_encoded_frames_than_number_of_frames_is_refused(dicom_files: dict[str, Path]) -> None:
    ds = pydicom.dcmread(dicom_files["SC_rgb_jpeg_dcmtk.dcm"])
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame] * 50, has_bot=True)
    ds.NumberOfFrames = 1
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(ImageLoadError, match="more encoded frames than its NumberOfFrames"):
        load_bytes(buf.getvalue(), "x.dcm")


def _rle_file(src: Path, frame: bytes) -> bytes:
    ds = pydicom.dcmread(src)
    ds.PixelData = encapsulate([frame])
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_rle_header_inconsistent_with_dicom_header_is_refused(dicom_files: dict[str, Path]) -> None:
    src = dicom_files["MR_small_RLE.dcm"]  # 64x64, 16 bits: 2 segments
    frame = bytearray(
        next(pydicom.encaps.generate_frames(pydicom.dcmread(src).PixelData, number_of_frames=1))
    )
    bad = bytearray(frame)
    struct.pack_into("<I", bad, 0, 9)
    with pytest.raises(ImageLoadError, match="declares 9 segments"):
        load_bytes(_rle_file(src, bytes(bad)), "x.dcm")
    bad = bytearray(frame)
    struct.pack_into("<I", bad, 8, len(frame) + 1000)
    with pytest.raises(ImageLoadError, match="outside the frame"):
        load_bytes(_rle_file(src, bytes(bad)), "x.dcm")


def test_rle_segment_that_decodes_past_rows_x_columns_is_bounded(dicom_files: dict[str, Path]) -> None:
    src = dicom_files["MR_small_RLE.dcm"]  # 64x64 pixels, 16 bits: 2 segments of 4096 bytes each
    # each b"\x81\x00" decodes to 128 zero bytes: 2 x 2 MB of runs would be 256 MB with an unbounded decoder
    runs = b"\x81\x00" * MIB
    header = struct.pack("<16I", 2, 64, 64 + len(runs), *([0] * 13))
    data = _rle_file(src, header + runs + runs)
    # the error's traceback still references the 4 MB dataset; nothing decoded is kept
    assert_bounded_error(lambda: load_bytes(data, "x.dcm"), ImageTooLargeError, "RLE segment", kept=16 * MIB)
    # short enough to pass that check, still longer than 64x64: pylibjpeg-rle stops at Rows x Columns
    runs = b"\x81\x00" * 2000
    header = struct.pack("<16I", 2, 64, 64 + len(runs), *([0] * 13))
    with pytest.raises(ImageLoadError, match="Could not decode"):
        load_bytes(_rle_file(src, header + runs + runs), "x.dcm")


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG-LL.dcm",
        "JPGExtended.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "JPEG2000.dcm",
        "MR_small_jp2klossless.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "SC_rgb_gdcm_KY.dcm",
        "MR_small_RLE.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_rle_16bit_2frame.dcm",
        "emri_small_RLE.dcm",
        "examples_ybr_color.dcm",
    ],
)
def test_genuine_compressed_files_decode_as_pydicom_does(dicom_files: dict[str, Path], name: str) -> None:
    path = dicom_files[name]
    image = load(path)
    ds = pydicom.dcmread(path)
    if image.photometric == "RGB":
        expected = ds.pixel_array  # YBR converted to RGB, as medvlab does
        if expected.dtype == np.uint8:
            np.testing.assert_array_equal(image.pixels, expected.reshape(image.pixels.shape))
    else:
        expected = np.asarray(apply_modality_lut(ds.pixel_array, ds))
        np.testing.assert_allclose(image.pixels, expected.reshape(image.pixels.shape))
    np.testing.assert_array_equal(load_bytes(path.read_bytes(), name).pixels, image.pixels)


# --- NIfTI .nii.gz --------------------------------------------------------------------------------


def gzipped(parts: Iterator[bytes], level: int = 1) -> bytes:
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    return b"".join(z.compress(p) for p in parts) + z.flush()


def nifti_bytes(data: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]))
    if shape is not None:
        img.header.set_data_shape(shape)
        img.header.set_data_offset(352)
        return img.header.binaryblock + b"\x00" * 4 + np.asfortranarray(data).tobytes(order="F")
    return img.to_bytes()


def test_nifti_gz_bomb_is_refused_after_its_declared_volume(tmp_path: Path) -> None:
    head = nifti_bytes(np.arange(1000, dtype=np.int16).reshape(10, 10, 10))
    data = gzipped(iter([head, *(bytes(MIB) for _ in range(300))]))  # then 300 MB of zeros
    assert len(data) < 2 * MIB
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(data)
    assert_bounded_error(lambda: load(path), ImageTooLargeError, "decompression bomb")
    assert_bounded_error(lambda: load_bytes(data, "bomb.nii.gz"), ImageTooLargeError, "declares")


def test_4d_nifti_gz_decompresses_only_its_first_volume(tmp_path: Path) -> None:
    first = np.random.default_rng(0).integers(-1000, 1000, (64, 64, 32), dtype=np.int16)
    volumes = 400  # 400 x 256 kB = 100 MB once decompressed
    head = nifti_bytes(first, shape=(64, 64, 32, volumes))
    data = gzipped(iter([head, *(bytes(first.nbytes) for _ in range(volumes - 1))]))
    (tmp_path / "first.nii").write_bytes(nifti_bytes(first))
    expected = load(tmp_path / "first.nii")
    image, peak, _ = peak_bytes(lambda: load_bytes(data, "4d.nii.gz", volume=0))
    assert not isinstance(image, Exception), image
    assert image.metadata["nifti_shape"] == [64, 64, 32, volumes]
    np.testing.assert_array_equal(image.pixels, expected.pixels)
    np.testing.assert_allclose(image.affine, expected.affine)
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB for a 256 kB first volume"


def test_genuine_nifti_gz_matches_nibabel(nibabel_data: Path) -> None:
    for name in ("standard.nii.gz", "example4d.nii.gz", "example_nifti2.nii.gz"):
        path = nibabel_data / name
        if not path.exists():
            continue
        ref = nib.load(str(path))
        raw = gzip.decompress(path.read_bytes())
        volume = 1 if len(ref.shape) > 3 else None  # a 4-D file is read only with a volume chosen
        plain = load_bytes(raw, name.removesuffix(".gz"), volume=volume)
        image = load(path, volume=volume)
        np.testing.assert_array_equal(image.pixels, plain.pixels)
        assert image.pixels.size == int(np.prod(ref.shape[:3]))


def test_nifti_gz_padding_is_tolerated_and_truncation_is_an_error() -> None:
    good = nifti_bytes(np.ones((4, 4, 4), np.int16))
    # a few bytes of padding after the volume are tolerated (within the margin)
    image = load_bytes(gzipped(iter([good, b"\x00" * 100])), "pad.nii.gz")
    assert image.pixels.shape == (4, 4, 4)
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_bytes(gzipped(iter([good[:-10]])), "short.nii.gz")


# --- photos ---------------------------------------------------------------------------------------


def png_1bit(width: int, height: int) -> bytes:
    """A 1-bit all-black PNG of any size, written row by row (PIL would need the image in memory)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(1)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 40000])  # 400 M pixels (PIL warns) and 1.6 G (PIL refuses)
def test_png_bomb_is_refused_from_its_header(side: int) -> None:
    from PIL import Image

    data = png_1bit(side, side)
    before = Image.MAX_IMAGE_PIXELS
    assert_bounded_error(lambda: load_bytes(data, "bomb.png"), ImageTooLargeError, "limit")
    assert before == Image.MAX_IMAGE_PIXELS  # PIL's global limit is bound only while opening


def test_pil_uses_our_pixel_limit() -> None:
    data = png_1bit(300, 300)
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_bytes(data, "x.png", LoadLimits(max_pixels_per_slice=10_000))  # > 2x: PIL's own error
    image = load_bytes(data, "x.png")
    assert image.photometric == "MONOCHROME2" and image.pixels.dtype == np.uint8  # 1-bit stays 1 byte
    assert image.pixels.shape == (1, 300, 300)


def test_multi_frame_tiff_limits() -> None:
    from PIL import Image

    frames = [Image.fromarray(np.full((8, 8), k, np.uint8)) for k in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    image = load_bytes(buf.getvalue(), "x.tif")
    assert image.pixels.shape == (1, 8, 8) and int(image.pixels.max()) == 0  # the first frame
    with pytest.raises(ImageTooLargeError, match="6 frames"):
        load_bytes(buf.getvalue(), "x.tif", LoadLimits(max_slices=4))


# --- uploads stay in memory -----------------------------------------------------------------------


def test_load_bytes_writes_nothing_to_disk(
    monkeypatch: pytest.MonkeyPatch, dicom_files: dict[str, Path], nibabel_data: Path
) -> None:
    import builtins
    import tempfile

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load_bytes touched the disk")

    real_open = builtins.open

    def read_only_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"load_bytes opened {file!r} for writing")
        return real_open(file, mode, *args, **kwargs)

    uploads = {
        "ct.dcm": dicom_files["CT_small.dcm"].read_bytes(),
        "dfl.dcm": deflated_dicom(dicom_files["MR_small.dcm"]),
        "jls.dcm": dicom_files["MR_small_jpeg_ls_lossless.dcm"].read_bytes(),
        "scan.nii.gz": (nibabel_data / "standard.nii.gz").read_bytes(),
        "scan.nii": gzip.decompress((nibabel_data / "standard.nii.gz").read_bytes()),
        "photo.png": png_1bit(64, 32),
    }
    for name in ("mkdtemp", "mkstemp", "TemporaryDirectory", "NamedTemporaryFile", "TemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(Path, "write_bytes", refuse)
    for name, data in uploads.items():
        assert load_bytes(data, name).pixels.size > 0
