"""DICOM Segmentation objects (highdicom): find the source headers of a segmented image again and write a
binary SEG that references them. Kept under ``imaging/`` with every other DICOM object medvlab writes;
segments are described by plain data (name + SNOMED category and type), so this knows nothing of ``seg``."""

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
