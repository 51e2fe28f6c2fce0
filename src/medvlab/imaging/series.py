"""DICOM series: many single-frame files grouped by SeriesInstanceUID, sorted by position, stacked."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medvlab.config import LoadLimits
from medvlab.errors import ImageLoadError, ImageTooLargeError, MedvlabError
from medvlab.imaging.bounded import check_size
from medvlab.imaging.deflate import open_dataset
from medvlab.imaging.dicom import (
    Progress,
    _decode,
    _image,
    _metadata,
    _pixels_and_photometric,
    apply_rescale,
    damaged,
    has_pixels,
    is_dicom_file,
    read_dicom_file,
    rescale_params,
)
from medvlab.imaging.geometry import build_affine, orientation, position, slice_thickness, spacing_2d
from medvlab.imaging.types import MedImage

logger = logging.getLogger(__name__)


def _slice_positions(datasets: Sequence[Dataset]) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, slice normal) when every slice has a position and an orientation, else None."""
    orients = [orientation(d) for d in datasets]
    positions = [position(d) for d in datasets]
    if any(o is None for o in orients) or any(p is None for p in positions):
        return None
    row_dir, col_dir = orients[0]  # type: ignore[misc]
    return np.array(positions), np.cross(row_dir, col_dir)


def read_dicom_series(
    paths: Sequence[Path],
    series_uid: str | None = None,
    limits: LoadLimits | None = None,
    progress: Progress | None = None,
    what: str = "the folder",
) -> MedImage:
    """A DICOM series from many files (see :func:`_read_series`); a damaged header is a clear error."""
    try:
        return _read_series(paths, series_uid, limits, progress, what)
    except MedvlabError:
        raise
    except Exception as exc:  # lazily parsed elements of a damaged file fail when first read
        if isinstance(exc, MemoryError):
            raise
        raise damaged(f"A file in {what}", exc) from exc


def _read_series(
    paths: Sequence[Path],
    series_uid: str | None,
    limits: LoadLimits | None,
    progress: Progress | None,
    what: str,
) -> MedImage:
    """A DICOM series from many files: grouped by SeriesInstanceUID, sorted by position, stacked.

    Files that are not DICOM are skipped; if several series are present, ``series_uid`` picks one,
    else the one with the most images is used and the others are listed in ``metadata['other_series']``.
    """
    limits = limits or LoadLimits()
    if len(paths) > 4 * limits.max_slices:
        raise ImageTooLargeError(
            f"{what} holds {len(paths)} files, too many for one series (limit {limits.max_slices} slices).",
            "Point medvlab at the folder of a single series.",
        )
    groups: dict[str, list[Dataset]] = defaultdict(list)
    names: dict[int, str] = {}
    for i, p in enumerate(paths):
        if progress:
            progress(i, len(paths))
        if p.stat().st_size > limits.max_file_mb * 2**20:
            raise ImageTooLargeError(
                f"'{p.name}' is larger than {limits.max_file_mb} MiB.", "Check the file."
            )
        force = is_dicom_file(p) or p.suffix.lower() in (".dcm", ".dicom", ".ima")
        try:
            ds = open_dataset(p, limits, name=p.name, force=force)  # deflated: inflated within limits
        except ImageTooLargeError:
            raise
        except Exception:  # not DICOM, or too damaged to parse: not part of the series
            logger.debug("skipping non-DICOM file %s", p)
            continue
        if not has_pixels(ds) or "Rows" not in ds:
            logger.debug("skipping DICOM file without pixels %s", p)
            continue
        groups[str(ds.get("SeriesInstanceUID", "unknown"))].append(ds)
        names[id(ds)] = p.name
    if progress:
        progress(len(paths), len(paths))
    if not groups:
        raise ImageLoadError(
            f"No DICOM image files were found in {what}.", "Point medvlab at a DICOM series folder."
        )
    if series_uid is not None:
        if series_uid not in groups:
            raise ImageLoadError(
                f"Series '{series_uid}' is not in {what}.", f"Available series: {', '.join(sorted(groups))}."
            )
        chosen = series_uid
    else:
        chosen = max(groups, key=lambda k: len(groups[k]))
    datasets = groups[chosen]
    others = {k: len(v) for k, v in groups.items() if k != chosen}
    if others:
        logger.info("%s holds %d series; using %s (%d images)", what, len(groups), chosen, len(datasets))

    if len(datasets) == 1:
        image = read_dicom_file(Path(names[id(datasets[0])]), limits, ds=datasets[0])
        image.metadata["other_series"] = others
        return image

    geometry = _slice_positions(datasets)
    if geometry is not None:  # sort along the slice normal; headers are parsed once
        order = np.argsort(geometry[0] @ geometry[1], kind="stable")
        datasets = [datasets[i] for i in order]
        positions = geometry[0][order]
    else:
        logger.warning("slices lack ImagePositionPatient/ImageOrientationPatient; sorting by InstanceNumber")
        datasets.sort(key=lambda d: float(d.get("InstanceNumber", 0) or 0))
    first = datasets[0]
    rows, cols = int(first.Rows), int(first.Columns)
    check_size(what, rows, cols, len(datasets), limits)
    for d in datasets:
        if int(d.Rows) != rows or int(d.Columns) != cols or int(d.get("NumberOfFrames", 1) or 1) != 1:
            raise ImageLoadError(
                f"'{names[id(d)]}' is {d.Rows}x{d.Columns} (frames {d.get('NumberOfFrames', 1)}) "
                f"but the series is {rows}x{cols} single-frame.",
                "Load the files of one series only, or pass series_uid to pick one.",
            )

    first_arr, photometric = _pixels_and_photometric(
        first, names[id(first)], _decode(first, names[id(first)], limits), 1
    )
    stack = np.empty((len(datasets), *first_arr.shape[1:]), dtype=first_arr.dtype)
    stack[0] = first_arr[0]
    for i, d in enumerate(datasets[1:], start=1):
        arr, _ = _pixels_and_photometric(d, names[id(d)], _decode(d, names[id(d)], limits), 1)
        stack[i] = arr[0]

    pixels: np.ndarray = stack
    if photometric != "RGB":
        params = [rescale_params(d) for d in datasets]
        if len(set(params)) == 1 and params[0] is not None:
            pixels = apply_rescale(stack, *params[0], inplace=True)
        elif any(p is not None for p in params):
            pixels = np.stack(
                [apply_rescale(s, *(p or (1.0, 0.0))) for s, p in zip(stack, params, strict=True)]
            )
            pixels = pixels.astype(np.float32)

    row_spacing, col_spacing = spacing_2d(first)
    meta = _metadata(first)
    meta["files"] = len(datasets)
    meta["SOPInstanceUIDs"] = [str(d.SOPInstanceUID) for d in datasets if "SOPInstanceUID" in d]
    meta["other_series"] = others
    if geometry is not None:
        steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        slice_spacing = float(np.median(steps)) if len(steps) else slice_thickness(first)
        if slice_spacing <= 0:
            raise ImageLoadError(
                f"Several images in {what} share one position; they are not one 3-D series.",
                "Pick a single series (e.g. one echo or phase) and load it alone.",
            )
        if len(steps) and (steps.max() - steps.min()) > 0.1 * slice_spacing:
            meta["nonuniform_spacing"] = True
            logger.warning("slice spacing in %s varies from %.3g to %.3g mm", what, steps.min(), steps.max())
        spacing = (slice_spacing, row_spacing, col_spacing)
        row_dir, col_dir = orientation(first)  # type: ignore[misc]
        affine = build_affine(positions[0], row_dir, col_dir, spacing)
    else:
        spacing = (slice_thickness(first), row_spacing, col_spacing)
        affine = np.diag([*spacing, 1.0])

    return _image(first, pixels, photometric, spacing, affine, "dicom-series", meta)
