"""Image loading speed: medvlab.load vs SimpleITK vs MONAI LoadImage, measured in the same run.

Data: a 300-slice 512x512 CT series built from a real CT slice (pydicom-data's 693_UNCI.dcm, each copy
shifted in z and in value so no two slices are equal), and the same volume as a NIfTI (.nii.gz) file.
Each loader reads each input ``--repeats`` times after one warm-up (so all read from the page cache);
the median is reported, with ratios against medvlab. Targets: medvlab at least as fast as SimpleITK,
and at least 5x faster than MONAI LoadImage on the series.

    python benchmarks/io_bench.py [--slices 300] [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import generate_uid

from medvlab.imaging import load
from timing import timed  # benchmarks/timing.py (python puts the script folder on sys.path)

logger = logging.getLogger("io_bench")


def real_ct_slice() -> Path:
    import data_store  # the pydicom-data package

    return Path(data_store.__file__).parent / "data" / "693_UNCI.dcm"


def build_series(folder: Path, n: int) -> np.ndarray:
    """Write an n-slice series from one real CT slice; returns the stored volume (slice order)."""
    base = pydicom.dcmread(real_ct_slice())
    pixels = base.pixel_array
    uid = generate_uid()
    x, y, z0 = (float(v) for v in base.ImagePositionPatient)  # read once: base.copy() shares elements
    folder.mkdir(parents=True, exist_ok=True)
    volume = np.empty((n, *pixels.shape), dtype=pixels.dtype)
    order = np.random.default_rng(0).permutation(n)
    for k in range(n):
        ds = base.copy()
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [x, y, z0 + 1.25 * k]
        ds.InstanceNumber = k + 1
        volume[k] = np.roll(pixels, k, axis=0) + (k % 7)
        ds.PixelData = volume[k].tobytes()
        ds.save_as(folder / f"IM{order[k]:05d}.dcm")  # file names do not follow slice order
    return volume


def sitk_series(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def sitk_file(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def monai_load(path: Path) -> object:
    from monai.transforms import LoadImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LoadImage(image_only=True)(str(path))


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="medvlab-bench-") as tmp:
        work = args.workdir or Path(tmp)
        series = work / "series"
        logger.info("building a %d-slice 512x512 CT series in %s ...", args.slices, series)
        volume = build_series(series, args.slices)
        nifti = work / "ct.nii.gz"
        nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), np.diag([0.48, 0.48, 1.25, 1.0])), nifti)

        # correctness first: every loader must return the same voxels
        ours = load(series).pixels
        ref = sitk_series(series)
        if ours.shape != ref.shape or not np.array_equal(ours, ref):
            raise SystemExit("medvlab and SimpleITK disagree on the series voxels")

        rows = []
        for name, path, loaders in [
            (
                f"DICOM series ({args.slices}x512x512)",
                series,
                {
                    "medvlab": lambda: load(series),
                    "SimpleITK": lambda: sitk_series(series),
                    "MONAI LoadImage": lambda: monai_load(series),
                },
            ),
            (
                "NIfTI .nii.gz (same volume)",
                nifti,
                {
                    "medvlab": lambda: load(nifti),
                    "SimpleITK": lambda: sitk_file(nifti),
                    "MONAI LoadImage": lambda: monai_load(nifti),
                },
            ),
        ]:
            results = {k: timed(fn, args.repeats) for k, fn in loaders.items()}
            base = results["medvlab"]
            for k, t in results.items():
                rows.append((name, k, t, t / base))
            del path

    print(f"\n{'input':34s} {'loader':16s} {'median s':>9s} {'vs medvlab':>11s}")
    for name, loader, t, ratio in rows:
        print(f"{name:34s} {loader:16s} {t:9.3f} {ratio:10.2f}x")
    series_rows = {loader: ratio for name, loader, _, ratio in rows if name.startswith("DICOM")}
    print(
        f"\nseries: SimpleITK/medvlab = {series_rows['SimpleITK']:.2f}x (target >= 1.0), "
        f"MONAI/medvlab = {series_rows['MONAI LoadImage']:.2f}x (target >= 5.0)"
    )


if __name__ == "__main__":
    main()
