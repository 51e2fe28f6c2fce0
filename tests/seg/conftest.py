"""Segmentation fixtures: real brains (MNI152 via nilearn, Colin27 via Debian mricron-data) and tiny
synthetic volumes for the fast training tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medvlab.seg.train import SegTrainConfig


def write_sphere_case(
    folder: Path, name: str, seed: int, size: int = 36, spacing: float = 2.0
) -> tuple[Path, Path]:
    """A noisy volume with a bright sphere (label 1) and a dimmer box (label 2), LPS-ish affine."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size, size, size)).astype(np.float32)
    centre = rng.uniform(size * 0.35, size * 0.65, size=3)
    radius = rng.uniform(size * 0.15, size * 0.25)
    sphere = ((grid - centre[:, None, None, None]) ** 2).sum(0) < radius**2
    box = np.zeros_like(sphere)
    c = rng.integers(4, 10, size=3)
    box[c[0] : c[0] + 6, c[1] : c[1] + 6, c[2] : c[2] + 6] = True
    box &= ~sphere
    image = rng.normal(100, 10, size=sphere.shape).astype(np.float32)
    image[sphere] += 200
    image[box] += 100
    labels = np.zeros(sphere.shape, np.uint8)
    labels[sphere], labels[box] = 1, 2
    affine = np.diag([spacing, spacing, spacing, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    img_path, lab_path = folder / f"{name}.nii.gz", folder / f"{name}_label.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(img_path))
    nib.save(nib.Nifti1Image(labels, affine), str(lab_path))
    return img_path, lab_path


@pytest.fixture(scope="session")
def sphere_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("spheres")
    pairs = [write_sphere_case(folder / "cases", f"case{i}", seed=i) for i in range(4)]
    return {"images": [p[0] for p in pairs], "labels": [p[1] for p in pairs]}


@pytest.fixture(scope="session")
def sphere_model(tmp_path_factory: pytest.TempPathFactory, sphere_cases: dict[str, list[Path]]) -> Path:
    """A small UNet trained for a few epochs on the synthetic cases (shared by infer/export tests)."""
    from medvlab.seg.train import train_segmentation

    out = tmp_path_factory.mktemp("sphere-run")
    train_segmentation(sphere_config(sphere_cases, out, epochs=6, steps_per_epoch=6))
    return out


def sphere_config(cases: dict[str, list[Path]], out: Path, **kw: object) -> SegTrainConfig:
    """A fast training config on the synthetic cases (tiny UNet, 32^3 patches); ``kw`` overrides."""
    base: dict[str, object] = dict(
        images=[str(p) for p in cases["images"]],
        labels=[str(p) for p in cases["labels"]],
        output_dir=out,
        width=4,
        patch=32,
        label_names=["sphere", "box"],
        epochs=2,
        steps_per_epoch=4,
        num_samples=2,
        lr=5e-3,
        augment=False,
    )
    base.update(kw)
    return SegTrainConfig(**base)  # type: ignore[arg-type]
