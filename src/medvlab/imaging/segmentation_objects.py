"""DICOM Segmentation objects (highdicom): read a SEG onto the grid of the series it references, find the
source headers of a segmented image again, and write a binary SEG that references them. Kept under
``imaging/`` with every other DICOM object medvlab reads or writes; segments are described by plain data
(name + SNOMED category and type), so this knows nothing of ``seg``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydicom.dataset import Dataset

from medvlab import __version__
from medvlab.config import LoadLimits
from medvlab.errors import ConfigError
from medvlab.imaging.deflate import open_dataset
from medvlab.imaging.dicom import is_dicom_file, list_files
from medvlab.imaging.types import MedImage

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
"""SOP Class UID of DICOM Segmentation Storage."""


def is_dicom_seg(path: Path) -> bool:
    """True for a DICOM Segmentation object (e.g. exported by 3D Slicer or written by medvlab)."""
    if not (path.is_file() and is_dicom_file(path)):
        return False
    try:
        ds = open_dataset(path, LoadLimits(), name=path.name, force=False, stop_before_pixels=True)
        return str(ds.get("SOPClassUID", "")) == SEG_STORAGE
    except Exception:  # unreadable header: not a SEG; the image loader reports the file properly
        return False


def read_seg(path: Path, reference: MedImage | None, limits: LoadLimits) -> MedImage:
    """A DICOM SEG put on the grid of the image it references, as a label volume.

    A SEG stores frames per source instance (empty ones often omitted), so it becomes a label array only
    against ``reference``, the DICOM image it was drawn on: segment numbers become label values.
    """
    import highdicom as hd

    if reference is None or not reference.source_format.startswith("dicom"):
        raise ConfigError(
            f"'{path.name}' is a DICOM SEG; it needs the DICOM series it was drawn on to become a volume.",
            "Pass that series with --images.",
        )
    # read through the bounded path (a deflated SEG inflates only to what its header declares)
    seg = hd.seg.Segmentation.from_dataset(open_dataset(path, limits, name=path.name), copy=False)
    uids = list(reference.metadata.get("SOPInstanceUIDs", []))
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in seg.get("ReferencedSeriesSequence", [])
        for item in series.get("ReferencedInstanceSequence", [])
    }
    if not referenced & set(uids):  # highdicom would return an all-empty volume without complaint
        raise ConfigError(
            f"The DICOM SEG '{path.name}' does not fit the image it was paired with: it references none "
            "of its instances.",
            "Pair each SEG with the series it references (same sorted order).",
        )
    try:
        if len(uids) == reference.n_slices:  # a series of single-frame images
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=uids, combine_segments=True, assert_missing_frames_are_empty=True
            )
        else:  # one multi-frame image
            pixels = seg.get_pixels_by_source_frame(
                source_sop_instance_uid=uids[0],
                source_frame_numbers=list(range(1, reference.n_slices + 1)),
                combine_segments=True,
                assert_missing_frames_are_empty=True,
            )
    except (ValueError, KeyError, IndexError) as exc:  # highdicom: the SEG references other instances
        raise ConfigError(
            f"The DICOM SEG '{path.name}' does not fit the image it was paired with ({exc}).",
            "Pair each SEG with the series it references (same sorted order).",
        ) from exc
    return MedImage(
        np.asarray(pixels, dtype=np.uint8),
        spacing=reference.spacing,
        affine=reference.affine,
        modality="SEG",
        source_format="dicom-seg",
    )


class Segment(Protocol):
    """One structure: its label and SNOMED (scheme, code, meaning) category and type."""

    name: str
    category: tuple[str, str, str]
    type: tuple[str, str, str]


def _files(source: Path | Sequence[Path]) -> list[Path]:
    if isinstance(source, Path):
        return list_files(source) if source.is_dir() else [source]
    return [Path(p) for p in source]


def source_datasets(source: Path | Sequence[Path], image: MedImage) -> list[Dataset]:
    """The DICOM headers a segmentation of ``image`` was made from, in the image's slice order.

    ``source`` is what was loaded: a series folder, one DICOM file, or the list of files of a series.
    """
    uids: list[str] = list(image.metadata.get("SOPInstanceUIDs", []))
    files = _files(source)
    by_uid: dict[str, Dataset] = {}
    for f in files:
        if not is_dicom_file(f) and f.suffix.lower() not in (".dcm", ".dicom", ".ima"):
            continue
        try:
            # deflated files inflate only up to the size their header declares (decompression bombs)
            ds = open_dataset(f, LoadLimits(), name=f.name, force=False, stop_before_pixels=True)
        except Exception:  # not DICOM after all: skip, like the series reader
            continue
        if "SOPInstanceUID" in ds:
            by_uid[str(ds.SOPInstanceUID)] = ds
    missing = [u for u in uids if u not in by_uid]
    if not uids or missing:
        raise ConfigError(
            f"The DICOM files behind the image could not all be found again ({len(missing)} missing).",
            "Pass the series folder or file that was segmented.",
        )
    return [by_uid[u] for u in uids]


def write_seg(
    labels: np.ndarray,
    image: MedImage,
    source: Path | Sequence[Path],
    segments: Sequence[Segment],
    path: Path,
    model_name: str = "medvlab",
    algorithm: str = "medvlab",
) -> Path:
    """A DICOM Segmentation (highdicom, binary, one segment per structure) referencing the source series.

    ``source`` is what was loaded: a series folder, one DICOM file, or the list of files of a series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    name = source.name if isinstance(source, Path) else f"{len(source)} files"
    if not image.source_format.startswith("dicom"):
        raise ConfigError(
            f"'{name}' is not DICOM, so a DICOM SEG has no series to reference.",
            "Use the NIfTI output for NIfTI input, or segment the DICOM series.",
        )
    sources = source_datasets(source, image)
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm,
        version=__version__,
        family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=label.name,
            segmented_property_category=hd.sr.CodedConcept(*label.category),
            segmented_property_type=hd.sr.CodedConcept(*label.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
        )
        for i, label in enumerate(segments)
    ]
    try:
        seg = _segmentation(hd, sources, labels, descriptions, model_name)
    except ValueError as exc:  # highdicom checks the source's modules (frame of reference, geometry, ...)
        raise ConfigError(
            f"A DICOM SEG cannot reference '{name}': {exc}",
            "Use the NIfTI output for this image.",
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def _segmentation(
    hd: Any, sources: list[Dataset], labels: np.ndarray, descriptions: list[Any], model_name: str
) -> Any:
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.ascontiguousarray(labels.astype(np.uint8)),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(sources[0].get("SeriesNumber", 0) or 0) + 900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medvlab",
        manufacturer_model_name=model_name,
        software_versions=__version__,
        device_serial_number="0",
        series_description="medvlab segmentation - research use only",
    )
