"""A 4-D NIfTI is never silently cut to its first volume: refused without a choice, or the chosen volume read.

Real 4-D files written with nibabel, as ``.nii`` (read lazily) and ``.nii.gz`` (decompressed only up to the
chosen volume), including a tiny volume that lies inside the 540-byte header read.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medvlab.errors import ImageLoadError
from medvlab.imaging import load, load_bytes
from tests.imaging.test_bombs import MIB, gzipped, nifti_bytes, peak_bytes


@pytest.fixture(scope="module")
def four_d(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("4d")
    out = {}
    for name, shape in (("big", (20, 22, 8, 3)), ("tiny", (4, 4, 2, 5))):
        data = np.random.default_rng(1).integers(-500, 500, shape).astype(np.int16)
        img = nib.Nifti1Image(data, np.diag([0.9, 0.9, 2.5, 1.0]))
        for suffix in (".nii", ".nii.gz"):
            nib.save(img, folder / f"{name}{suffix}")
            out[f"{name}{suffix}"] = folder / f"{name}{suffix}"
        for k in range(shape[3]):  # each volume alone, as the expected result
            nib.save(nib.Nifti1Image(data[..., k], img.affine), folder / f"{name}-{k}.nii")
            out[f"{name}-{k}"] = folder / f"{name}-{k}.nii"
    return out


@pytest.mark.parametrize("name", ["big.nii", "big.nii.gz", "tiny.nii", "tiny.nii.gz"])
def test_a_4d_nifti_without_a_volume_is_refused_naming_how_many(four_d: dict[str, Path], name: str) -> None:
    count = 3 if name.startswith("big") else 5
    with pytest.raises(ImageLoadError, match=f"holding {count} volumes") as err:
        load(four_d[name])
    assert f"--volume N (0 to {count - 1})" in str(err.value)
    with pytest.raises(ImageLoadError, match=f"holding {count} volumes"):
        load_bytes(four_d[name].read_bytes(), name)


@pytest.mark.parametrize("name", ["big.nii", "big.nii.gz", "tiny.nii", "tiny.nii.gz"])
def test_each_chosen_volume_is_exactly_that_volume(four_d: dict[str, Path], name: str) -> None:
    stem = name.split(".")[0]
    count = 3 if stem == "big" else 5
    for k in range(count):
        image = load(four_d[name], volume=k)
        expected = load(four_d[f"{stem}-{k}"])
        np.testing.assert_array_equal(image.pixels, expected.pixels)
        np.testing.assert_allclose(image.affine, expected.affine)
        assert image.metadata["nifti_volume"] == k
        assert image.metadata["nifti_shape"][3] == count
        from_bytes = load_bytes(four_d[name].read_bytes(), name, volume=k)
        np.testing.assert_array_equal(from_bytes.pixels, expected.pixels)
    with pytest.raises(ImageLoadError, match=f"between 0 and {count - 1}"):
        load(four_d[name], volume=count)


def test_a_3d_nifti_takes_volume_0_only(four_d: dict[str, Path]) -> None:
    assert load(four_d["big-1"], volume=0).pixels.shape == (8, 22, 20)
    with pytest.raises(ImageLoadError, match="holds 1 volume"):
        load(four_d["big-1"], volume=1)


def test_a_late_volume_of_a_large_4d_gz_stays_within_one_volume_of_memory() -> None:
    """Volume 300 of a 400-volume ``.nii.gz`` (100 MB decompressed): earlier volumes are discarded."""
    rng = np.random.default_rng(0)
    first = rng.integers(-1000, 1000, (64, 64, 32), dtype=np.int16)
    chosen = rng.integers(-1000, 1000, (64, 64, 32), dtype=np.int16)
    volumes, k = 400, 300
    head = nifti_bytes(first, shape=(64, 64, 32, volumes))
    parts = [head, *(bytes(first.nbytes) for _ in range(k - 1)), np.asfortranarray(chosen).tobytes(order="F")]
    data = gzipped(iter([*parts, *(bytes(first.nbytes) for _ in range(volumes - k - 1))]))
    image, peak, _ = peak_bytes(lambda: load_bytes(data, "4d.nii.gz", volume=k))
    assert not isinstance(image, Exception), image
    expected = load_bytes(nifti_bytes(chosen), "one.nii")
    np.testing.assert_array_equal(image.pixels, expected.pixels)
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB for a 256 kB volume"
