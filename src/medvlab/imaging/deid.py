"""De-identification of every image medvlab stores: DICOM (PS3.15 Annex E basic profile), photos, NIfTI.

DICOM goes through four passes over the whole dataset, sequences included:

1. dicognito does what it does well: new UIDs that stay consistent within a study (same ``seed``, same
   UIDs), dummy names and IDs, dates shifted by one offset per seed.
2. every private attribute is removed.
3. :data:`BASIC_PROFILE` (Table E.1-1, kept in ``deid_basic_profile.tsv`` so it can be audited) is
   applied to every attribute it lists: X removes, Z empties, D keeps dicognito's dummy or writes one.
4. belt and braces: any text attribute left that still holds a part of the patient's name or ID
   (as they were before step 1) is emptied.

Pixel data is kept as it is: burned-in text is not detected (``BurnedInAnnotation = YES`` gives a
warning and ``PatientIdentityRemoved = NO``). Photos keep their pixels only (no text chunks, EXIF, XMP,
comments); NIfTI keeps its voxels but not its free-text header fields nor its extensions.
"""

from __future__ import annotations

import copy
import io
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pydicom
from isal import igzip
from PIL import Image, UnidentifiedImageError
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, UnsupportedFormatError
from medvlab.imaging.deflate import open_dataset

logger = logging.getLogger(__name__)

PROFILE_FILE = "deid_basic_profile.tsv"
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
PHOTO_FORMATS = {"BMP": ".bmp", "TIFF": ".tiff", "WEBP": ".webp"}  # beyond PNG/JPEG, what load() reads
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
_TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "UN"})  # free text, not CS
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_DUMMY_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_DUMMY: dict[str, object] = {"TM": "000000", "DA": "19000101", "DT": "19000101", "IS": "0", "DS": "0"}
_DUMMY.update({"AS": "000Y"} | {vr: 0 for vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV")})
# Z allows a dummy, and dicognito's shifted dates are one, except this: it would still tell the age.
_EMPTY_EVEN_IF_REPLACED = frozenset({0x00100030})  # PatientBirthDate
_NIFTI_TEXT_FIELDS = ("data_type", "db_name", "descrip", "aux_file", "intent_name", "unused_str")
_ANALYZE_TEXT_FIELDS = ("generated", "scannum", "patient_id", "exp_date", "exp_time")


@dataclass(frozen=True)
class ProfileRule:
    """One row of ``deid_basic_profile.tsv``: ``tag`` is ``(gggg,eeee)``, or with ``xx`` for repeats."""

    tag: str
    action: str
    keyword: str
    name: str
    source: str  # "E.1-1" (the standard's table) or "medvlab" (a stricter addition)


def _load_profile() -> tuple[ProfileRule, ...]:
    text = resources.files("medvlab.imaging").joinpath(PROFILE_FILE).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return tuple(ProfileRule(*ln.split("\t")) for ln in lines)


PROFILE_RULES: tuple[ProfileRule, ...] = _load_profile()
BASIC_PROFILE: dict[str, str] = {r.keyword: r.action for r in PROFILE_RULES}
"""Keyword -> PS3.15 Table E.1-1 basic profile action (X, Z, D, U, Z/D, X/Z, X/D, X/Z/D, X/Z/U*), plus
medvlab's stricter rows; the full table with tags, names and sources is ``deid_basic_profile.tsv``."""


# tags as 8 hex digits; in repeating groups "x" is any digit: (mask, value) with tag & mask == value
_HEX = {r.tag[1:5] + r.tag[6:10]: r.action for r in PROFILE_RULES}
_BY_TAG = {int(h, 16): action for h, action in _HEX.items() if "x" not in h}
_REPEATING = tuple(
    (int(re.sub("[0-9A-F]", "F", h).replace("x", "0"), 16), int(h.replace("x", "0"), 16), action)
    for h, action in _HEX.items()
    if "x" in h
)


def profile_action(tag: int) -> str | None:
    """The basic-profile action for an attribute tag, or None when the profile keeps it."""
    action = _BY_TAG.get(tag)
    if action is None:
        action = next((a for mask, value, a in _REPEATING if tag & mask == value), None)
    return action


@dataclass(frozen=True)
class Deidentified:
    """A de-identified file: its bytes, a safe suffix for it (``.dcm``, ``.nii.gz``...) and its kind."""

    data: bytes
    suffix: str
    kind: str  # dicom / png / jpeg / photo / nifti / raw


def deidentify_bytes(data: bytes, name: str, seed: str | None = None) -> Deidentified:
    """De-identify one image file given as bytes; ``name`` only helps to tell the format, it is not kept.

    Raises :class:`~medvlab.errors.UnsupportedFormatError` for a file that cannot be de-identified
    (medvlab stores nothing it cannot clean) and :class:`~medvlab.errors.ImageLoadError` for a broken one.
    """
    lower = name.lower()
    if len(data) >= 132 and data[128:132] == b"DICM":
        return Deidentified(deidentify_dicom(data, name, seed), ".dcm", "dicom")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Deidentified(_clean_photo(data, name, "PNG"), ".png", "png")
    if data.startswith(b"\xff\xd8\xff"):
        return Deidentified(_strip_jpeg(data, name), ".jpg", "jpeg")
    if data.startswith(b"\x1f\x8b"):
        try:
            raw = igzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ImageLoadError(f"'{name}' is a broken gzip file ({exc}).", "Upload it again.") from exc
        if _nifti_kind(raw) == "single":
            return Deidentified(igzip.compress(_clean_nifti(raw, name), mtime=0), ".nii.gz", "nifti")
    elif _nifti_kind(data) == "single":
        return Deidentified(_clean_nifti(data, name), ".nii", "nifti")
    elif _nifti_kind(data) == "pair" or lower.endswith(".hdr"):  # NIfTI pair or Analyze 7.5 header
        return Deidentified(_clean_nifti(data, name), ".hdr", "nifti")
    elif lower.endswith(".img"):  # the voxels of an Analyze/NIfTI pair: no header, no text
        return Deidentified(data, ".img", "raw")
    elif lower.endswith(DICOM_SUFFIXES) or "." not in lower:  # DICOM without the Part 10 preamble
        return Deidentified(deidentify_dicom(data, name, seed), ".dcm", "dicom")
    elif (fmt := _photo_format(data)) in PHOTO_FORMATS:
        return Deidentified(_clean_photo(data, name, str(fmt)), PHOTO_FORMATS[str(fmt)], "photo")
    raise UnsupportedFormatError(
        f"'{name}' is not a format medvlab can de-identify, so it is not stored.",
        "Send DICOM, NIfTI (.nii/.nii.gz), PNG, JPEG, TIFF, BMP or WebP.",
    )


def deidentify_file(src: Path, dst: Path, seed: str | None = None) -> bool:
    """Write a de-identified copy of ``src`` to ``dst`` (see :func:`deidentify_bytes`); True for DICOM.
    ``seed`` makes the UID/ID remapping reproducible across files of one study (same seed, same UIDs)."""
    result = deidentify_bytes(src.read_bytes(), src.name, seed)
    dst.write_bytes(result.data)
    return result.kind == "dicom"


# -- DICOM ------------------------------------------------------------------------------------------
def deidentify_dicom(data: bytes, name: str, seed: str | None = None) -> bytes:
    """The bytes of a DICOM file after :func:`deidentify_dataset`."""
    step = "read as DICOM"
    try:
        ds = open_dataset(data, LoadLimits(), name=name)  # deflate inflated within its declared size
        if "PixelData" not in ds and "SOPClassUID" not in ds:
            raise ValueError("no SOP class and no pixel data")
        step = "de-identified"
        deidentify_dataset(ds, seed)
        ds.preamble = b"\x00" * 128 if ds.preamble else None  # a preamble can carry a TIFF header
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
    except Exception as exc:  # pydicom/dicognito raise many types for a broken file
        problem = f"'{name}' could not be {step} ({type(exc).__name__}: {exc}), so it is not stored."
        raise ImageLoadError(problem, "Check that it is a complete DICOM file and upload it again.") from exc
    return out.getvalue()


def deidentify_dataset(ds: Dataset, seed: str | None = None) -> None:
    """Apply the PS3.15 basic profile to ``ds`` in place (see the module docstring for the passes)."""
    from dicognito import __version__ as dicognito_version
    from dicognito.anonymizer import Anonymizer

    if not hasattr(ds, "file_meta"):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    burned_in = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
    needles = _identity_needles(ds)
    before, before_meta = _snapshot(ds), _snapshot(ds.file_meta)
    Anonymizer(seed=seed).anonymize(ds)
    ds.remove_private_tags()  # walks every sequence
    changed = _apply_profile(ds, before) + _apply_profile(ds.file_meta, before_meta)
    blanked = _blank_identity(ds, needles) + _blank_identity(ds.file_meta, needles)
    logger.debug(
        "basic profile: %d attributes removed or replaced, %d more held the name/ID", changed, blanked
    )
    if burned_in:
        logger.warning(
            "a DICOM file declares burned-in annotation; its pixels may still identify the patient"
        )
    ds.PatientIdentityRemoved = "NO" if burned_in else "YES"
    ds.DeidentificationMethod = [
        "DICOM PS3.15 E.1-1 Basic Profile",
        f"dicognito {dicognito_version} (UIDs, names, IDs, shifted dates)",
        "medvlab: table actions, private tags, name/ID scan",
    ]
    ds.DeidentificationMethodCodeSequence = Sequence(
        [_code(*BASIC_PROFILE_CODE), _code(*MODIFIED_DATES_CODE)]
    )
    ds.LongitudinalTemporalInformationModified = "MODIFIED"  # dicognito shifts every date by one offset


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _snapshot(ds: Dataset) -> dict[int, object]:
    """The values of ``ds`` (sequences as lists of snapshots, bulk data left out), to tell afterwards
    which values dicognito replaced."""
    out: dict[int, object] = {}
    for elem in ds:
        if elem.VR == "SQ":
            out[int(elem.tag)] = [_snapshot(item) for item in elem.value or []]
        elif elem.VR not in _BULK_VRS:
            out[int(elem.tag)] = copy.deepcopy(elem.value)
    return out


def _apply_profile(ds: Dataset, before: dict[int, object]) -> int:
    """Apply the table to ``ds`` and, recursively, to every sequence item; returns how many changed."""
    changed = 0
    for tag in list(ds.keys()):
        elem, t = ds[tag], int(tag)
        action, old = profile_action(t), before.get(t)
        if t & 0xFFFF == 0 and t >> 16 != 0x0002:  # group lengths go stale once attributes are removed
            action = "X"
        replaced = old is not None and elem.VR != "SQ" and old != elem.value
        if action is None or action == "U":  # UIDs: dicognito replaced every one but the SOP classes
            pass
        elif action.startswith("X") or (action == "D" and elem.VR == "SQ"):
            del ds[tag]  # also D on a sequence (stricter: no dummy items to invent)
            changed += 1
            continue
        elif elem.VR == "SQ":  # Z or Z/D on a sequence: zero items
            elem.value, changed = Sequence(), changed + 1
        elif replaced and t not in _EMPTY_EVEN_IF_REPLACED:
            changed += 1  # dicognito's dummy (name, ID, shifted date) is a valid Z or D value
        elif action in ("Z", "Z/D"):
            elem.value, changed = empty_value_for_VR(elem.VR), changed + 1
        elif _write_dummy(elem):  # D on a value dicognito left alone
            changed += 1
        else:  # D on binary data: no dummy that means anything, so removed
            del ds[tag]
            changed += 1
            continue
        if elem.VR == "SQ" and tag in ds:
            olds = old if isinstance(old, list) else []
            for i, item in enumerate(elem.value):
                changed += _apply_profile(item, olds[i] if i < len(olds) else {})
    return changed


def _write_dummy(elem: DataElement) -> bool:
    """Replace a value with a dummy consistent with its VR; False when there is none (binary data)."""
    if elem.VR in _DUMMY_TEXT_VRS:
        elem.value = "REMOVED"
    elif elem.VR in _DUMMY:
        elem.value = _DUMMY[elem.VR]
    else:
        return False
    return True


def _values(value: object) -> list[object]:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [] if value is None or value == "" else [value]


def _identity_needles(ds: Dataset) -> tuple[str, ...]:
    """Lower-cased parts (3+ characters) of the patient's names and IDs, to search the text left."""
    parts: set[str] = set()
    for keyword in ("PatientName", "OtherPatientNames", "PatientBirthName"):
        for value in _values(ds.get(keyword)):
            parts.update(p for p in re.split(r"[\^=\s,]+", str(value)) if len(p) >= 3)
    for keyword in ("PatientID", "OtherPatientIDs"):
        parts.update(v for v in (str(x).strip() for x in _values(ds.get(keyword))) if len(v) >= 3)
    return tuple(sorted(p.lower() for p in parts))


def _blank_identity(ds: Dataset, needles: tuple[str, ...]) -> int:
    """Empty every free-text value (any depth) that contains one of ``needles``; returns how many."""
    blanked = 0
    for elem in ds:
        if elem.VR == "SQ":
            blanked += sum(_blank_identity(item, needles) for item in elem.value or [])
        elif elem.VR in _TEXT_VRS and needles and elem.value:
            raw = elem.value
            text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
            if any(n in text.lower() for n in needles):
                elem.value = b"" if elem.VR == "UN" else ""
                blanked += 1
    return blanked


# -- photos -----------------------------------------------------------------------------------------
def _photo_format(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return str(im.format)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _clean_photo(data: bytes, name: str, fmt: str) -> bytes:
    """Re-save the pixels only, losslessly: no text chunks, EXIF, XMP, ICC profile or comments."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if (frames := getattr(im, "n_frames", 1)) > 1:
                logger.info("a %s with %d frames is stored with its first frame", fmt, frames)
            clean = im.copy()  # a plain Image: the pixels (and palette) without the file's metadata
            keep = {"transparency": im.info["transparency"]} if "transparency" in im.info else {}
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"'{name}' could not be decoded as {fmt} ({exc}).", "Upload it again.") from exc
    clean.info = {}
    out = io.BytesIO()
    clean.save(out, format=fmt, **keep, **({"lossless": True, "exact": True} if fmt == "WEBP" else {}))
    return out.getvalue()


def _strip_jpeg(data: bytes, name: str) -> bytes:
    """The JPEG without its APPn (EXIF, XMP, ICC, maker notes...) and COM segments, and nothing after EOI.

    The entropy-coded data is copied byte for byte, so the pixels decode exactly as before; re-encoding
    (even at quality 95) would change the pixels that were rated. APP0 "JFIF" and APP14 "Adobe" stay:
    they hold only density and the colour transform that decoding needs.
    """
    out, i, n = bytearray(b"\xff\xd8"), 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            raise ImageLoadError(f"'{name}' is a corrupt JPEG (no marker at byte {i}).", "Upload it again.")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        i += 2
        if marker == 0xD9:  # EOI
            out += b"\xff\xd9"
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            out += bytes((0xFF, marker))
            continue
        length = int.from_bytes(data[i : i + 2], "big")
        segment = data[i : i + length]
        i += length
        meta = 0xE0 <= marker <= 0xEF or marker == 0xFE
        if not meta or (marker, segment[2:7]) in ((0xE0, b"JFIF\x00"), (0xEE, b"Adobe")):
            out += bytes((0xFF, marker)) + segment
        if marker == 0xDA:  # scan data runs to the next marker that is not a stuffed 0xFF00 or RSTn
            j = i
            while (j := data.find(b"\xff", j)) != -1 and j + 1 < n:
                if data[j + 1] == 0x00 or 0xD0 <= data[j + 1] <= 0xD7:
                    j += 2
                elif data[j + 1] == 0xFF:
                    j += 1
                else:
                    break
            end = n if j == -1 or j + 1 >= n else j
            out += data[i:end]
            i = end
    return bytes(out)


# -- NIfTI / Analyze --------------------------------------------------------------------------------
def _nifti_kind(raw: bytes) -> str | None:
    """ "single" for a .nii (NIfTI-1/2), "pair" for the .hdr of a NIfTI pair, else None."""
    if raw[344:348] == b"n+1\x00" or raw[4:8] == b"n+2\x00":
        return "single"
    if raw[344:348] == b"ni1\x00" or raw[4:8] == b"ni2\x00":
        return "pair"
    return None


def _clean_nifti(raw: bytes, name: str) -> bytes:
    """The header with its free-text fields blanked and no extensions, then the voxels byte for byte."""
    import nibabel as nib
    from nibabel.nifti1 import Nifti1PairHeader
    from nibabel.nifti2 import Nifti2PairHeader

    kind, nifti2 = _nifti_kind(raw), raw[4:8] in (b"n+2\x00", b"ni2\x00")
    classes = {"single": (nib.Nifti1Header, nib.Nifti2Header), "pair": (Nifti1PairHeader, Nifti2PairHeader)}
    cls = classes[kind][nifti2] if kind else nib.AnalyzeHeader
    single = kind == "single"
    size = cls.template_dtype.itemsize
    try:
        header = cls(raw[:size], check=False)
        data_start = int(header["vox_offset"]) if single else len(raw)
    except Exception as exc:  # nibabel raises many types for a broken header
        raise ImageLoadError(
            f"'{name}' has a broken NIfTI/Analyze header ({exc}).", "Upload it again."
        ) from exc
    for field in _NIFTI_TEXT_FIELDS + _ANALYZE_TEXT_FIELDS:
        if field in (header.structarr.dtype.names or ()):
            header[field] = b""
    if not single:  # a pair's .hdr (or an Analyze header): the voxels are in the .img
        return bytes(header.binaryblock)
    header["vox_offset"] = size + 4  # no extensions: the voxels follow the 4-byte extension flag
    return bytes(header.binaryblock) + b"\x00" * 4 + raw[max(data_start, size) :]
