"""Preprocessing shared by training and inference, and the cached MONAI training pipeline.

Every volume goes through :func:`prepare`: reorient to RAS (an exact axis permutation/flip), resample
to the model's spacing, scale intensities. Training and prediction call the same function, so a model
always sees its input the way it was trained. Resampling is done in voxel space with
``torch.nn.functional.interpolate`` (as nnU-Net does) rather than MONAI's ``Spacing``: the inverse is a
resize to the recorded shape, exact and several times faster on CPU than a full affine resample.
Finding, pairing and reading the files lives in :mod:`medvlab.seg.files` (its names are re-exported).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, RandomizableTransform

from medvlab.errors import ConfigError, ImageLoadError
from medvlab.imaging.types import MedImage
from medvlab.seg.files import SEG_LIMITS as SEG_LIMITS
from medvlab.seg.files import VOLUME_SUFFIXES as VOLUME_SUFFIXES
from medvlab.seg.files import case_name as case_name
from medvlab.seg.files import expand as expand
from medvlab.seg.files import is_dicom_seg as is_dicom_seg
from medvlab.seg.files import load_label, load_volume
from medvlab.seg.files import pair as pair
from medvlab.seg.model import SegSpec

logger = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Geometry:
    """How an image was put into network space, so predictions can be put back."""

    ornt: np.ndarray
    """nibabel orientation transform from the image's (slice, row, col) axes to RAS."""
    native_shape: tuple[int, int, int]
    """Shape in RAS order at the image's own spacing."""
    native_spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    """Shape after resampling to the model's spacing."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of the original (slice, row, col) array."""
        out = [0, 0, 0]
        for axis, (target, _) in enumerate(self.ornt):
            out[axis] = self.native_shape[int(target)]
        return (out[0], out[1], out[2])


def grayscale(image: MedImage, what: str) -> np.ndarray:
    """The (slice, row, col) array of a grayscale volume; colour or 2-D images are refused."""
    if image.is_rgb:
        raise ImageLoadError(f"{what} is a colour image.", "Segmentation needs a grayscale CT or MR volume.")
    if image.n_slices < 2:
        raise ImageLoadError(
            f"{what} has a single slice.", "Segmentation needs a 3-D volume (a series, a NIfTI file)."
        )
    return image.pixels


def to_ras(pixels: np.ndarray, affine_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient a (slice, row, col) array to RAS; returns (array, orientation transform, RAS spacing)."""
    affine_ras = LPS_TO_RAS @ affine_lps
    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine_ras), nib.orientations.axcodes2ornt(("R", "A", "S"))
    )
    out = nib.orientations.apply_orientation(pixels, ornt)
    spacing = np.linalg.norm(affine_ras[:3, :3], axis=0)[np.argsort(ornt[:, 0])]
    return np.ascontiguousarray(out), ornt, spacing


def from_ras(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo :func:`to_ras` on a (X, Y, Z) array."""
    inverse = np.zeros_like(ornt)
    for axis, (target, flip) in enumerate(ornt):
        inverse[int(target)] = (axis, flip)
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, inverse))


def target_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def resize(x: torch.Tensor, shape: Sequence[int], mode: str) -> torch.Tensor:
    """Resize a (C, X, Y, Z) tensor; ``trilinear`` for intensities/probabilities, ``nearest-exact`` labels."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    kw: dict[str, Any] = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(x[None].float(), size=tuple(shape), mode=mode, **kw)[0]


def normalize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Scale intensities to about 0-1: robust percentiles for MR, a fixed HU range for CT."""
    if mode == "ct":
        return ((x.clamp(-1000, 1000) + 1000) / 2000).float()
    flat = x.flatten()
    if flat.numel() > 2_000_000:  # percentiles of a strided sample are as good and 10x cheaper
        flat = flat[:: flat.numel() // 1_000_000]
    lo, hi = torch.quantile(flat.float(), torch.tensor([0.005, 0.995], dtype=torch.float32)).tolist()
    if hi <= lo:
        return torch.zeros_like(x, dtype=torch.float32)
    return ((x.float() - lo) / (hi - lo)).clamp_(0, 1)


def prepare(image: MedImage, spec: SegSpec, normalized: bool = True) -> tuple[torch.Tensor, Geometry]:
    """A (1, X, Y, Z) float tensor in network space (RAS, model spacing, scaled) and how to undo it."""
    pixels = grayscale(image, "The image")
    ras, ornt, spacing = to_ras(pixels, image.affine)
    x = torch.from_numpy(ras.astype(np.float32, copy=False))[None]
    shape = target_shape(x.shape[1:], spacing.tolist(), spec.spacing)
    x = resize(x, shape, "trilinear")
    if normalized:
        x = normalize(x, spec.intensity)
    native = (int(ras.shape[0]), int(ras.shape[1]), int(ras.shape[2]))
    geo = Geometry(ornt, native, tuple(float(s) for s in spacing), (shape[0], shape[1], shape[2]))  # type: ignore[arg-type]
    return x, geo


def label_values(pixels: np.ndarray, binarize: bool) -> np.ndarray:
    """uint8 label values: every non-zero voxel is 1 with ``binarize``, else values rounded to integers."""
    return ((pixels > 0) if binarize else np.rint(pixels)).astype(np.uint8)


def prepare_label(label: MedImage, geo: Geometry, spec: SegSpec, binarize: bool) -> torch.Tensor:
    """A label volume in the same network space as its image (nearest-neighbour resampling)."""
    ras, _, _ = to_ras(label_values(grayscale(label, "The label"), binarize), label.affine)
    if ras.shape != geo.native_shape:
        raise ImageLoadError(
            f"The label has shape {ras.shape} but its image {geo.native_shape} (RAS order).",
            "Pair each image with the label drawn on it (same grid).",
        )
    top = int(ras.max())
    if top > len(spec.labels):
        raise ConfigError(
            f"A label holds value {top} but only {len(spec.labels)} structure(s) are named.",
            "Pass --label-names with one name per value, or --binarize for a mask.",
        )
    y = torch.from_numpy(ras)[None]
    return resize(y, geo.shape, "nearest-exact").to(torch.uint8)


def argmax_channels(scores: torch.Tensor) -> torch.Tensor:
    """uint8 ``argmax`` over the channel axis of (C, X, Y, Z).

    A running maximum over channels: elementwise and cache-friendly. ``Tensor.argmax(0)`` reduces over
    the outermost (strided) axis and is about 30x slower on CPU for a 181x217x181 volume.
    """
    labels = torch.zeros(scores.shape[1:], dtype=torch.uint8)
    best = scores[0].clone()
    for c in range(1, scores.shape[0]):
        better = scores[c] > best
        labels[better] = c
        torch.maximum(best, scores[c], out=best)
    return labels


def to_image_space(probs: torch.Tensor, geo: Geometry) -> np.ndarray:
    """Class probabilities (C, X, Y, Z) in network space -> label array in the image's (slice, row, col)."""
    native = resize(probs.float(), geo.native_shape, "trilinear")
    return from_ras(argmax_channels(native).numpy(), geo.ornt)


def brain_distance(label: torch.Tensor, spacing: Sequence[float]) -> torch.Tensor:
    """Distance (mm) of each voxel from the foreground, used to paint a synthetic head around it."""
    from scipy.ndimage import distance_transform_edt

    inside = label[0].numpy() > 0
    dist = distance_transform_edt(~inside, sampling=tuple(spacing))
    return torch.from_numpy(np.asarray(dist, dtype=np.float32))[None]


class LoadPreparedd(MapTransform):
    """Load an image/label pair from disk and put both in network space (the cached, deterministic part)."""

    def __init__(self, spec: SegSpec, binarize: bool, synth_head: bool) -> None:
        super().__init__(keys=("image", "label"))
        self.spec, self.binarize, self.synth_head = spec, binarize, synth_head

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = load_volume(Path(d["image"]))
        x, geo = prepare(image, self.spec, normalized=not self.synth_head)
        y = prepare_label(load_label(Path(d["label"]), image), geo, self.spec, self.binarize)
        d["image"], d["label"] = x, y
        if self.synth_head:
            d["dist"] = brain_distance(y, self.spec.spacing)
        return d


class RandSyntheticHeadd(RandomizableTransform, MapTransform):
    """Paint random CSF, skull and scalp shells (and air) around a skull-stripped training image.

    A model trained on a skull-stripped template (MNI152) learns "non-zero means brain" and fails on a
    real head. Replacing the empty background with random layers of random brightness and thickness
    (domain randomisation, in the spirit of SynthSeg) makes it learn the brain's own appearance.
    Intensities are then normalised like at inference.
    """

    def __init__(self, intensity: str, prob: float = 0.85) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys=("image",))
        self.intensity = intensity

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        x: torch.Tensor = d["image"]
        self.randomize(None)
        if self._do_transform:
            r = self.R
            dist: torch.Tensor = d["dist"][0]
            brain = x[0][d["label"][0] > 0]
            ref = float(brain.median()) if brain.numel() else 1.0
            # A smooth random field makes the shells uneven, like a real skull.
            coarse = torch.from_numpy(r.uniform(-3, 3, size=(1, 1, 4, 4, 4)).astype(np.float32))
            wobble = F.interpolate(coarse, size=dist.shape, mode="trilinear", align_corners=False)[0, 0]
            dd = dist + wobble
            edges = np.cumsum([r.uniform(0.5, 4), r.uniform(2, 9), r.uniform(2, 10), r.uniform(0, 25)])
            levels = [r.uniform(0.02, 0.35), r.uniform(0.0, 0.3), r.uniform(0.5, 1.6), r.uniform(0.2, 1.0)]
            out = x[0].clone()
            outside = dist > 0
            out[outside] = ref * r.uniform(0, 0.04)  # air
            lo = 0.0
            for edge, level in zip(edges, levels, strict=True):
                shell = outside & (dd > lo) & (dd <= edge)
                out[shell] = ref * level
                lo = float(edge)
            noise = torch.from_numpy(r.normal(0, r.uniform(0, 0.05) * ref, size=out.shape).astype(np.float32))
            out[outside] += noise[outside]
            x = out[None]
        d["image"] = normalize(x.clamp(min=0), self.intensity)
        d.pop("dist", None)
        return d


def training_transforms(spec: SegSpec, num_samples: int, synth_head: bool, augment: bool = True) -> list[Any]:
    """Random part of the pipeline: head synthesis, pos/neg crops, flips, intensity and affine jitter."""
    from monai.transforms import (
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    out: list[Any] = [RandSyntheticHeadd(spec.intensity)] if synth_head else []
    out.append(
        RandCropByPosNegLabeld(
            keys=("image", "label"),
            label_key="label",
            spatial_size=spec.patch,
            pos=1,
            neg=1,
            num_samples=num_samples,
            allow_smaller=False,
        )
    )
    if augment:
        out += [
            RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=0),
            RandAffined(
                keys=("image", "label"),
                prob=0.2,
                rotate_range=(0.15, 0.15, 0.15),
                scale_range=(0.1, 0.1, 0.1),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
        ]
    return out


def pad_to_patch(spec: SegSpec) -> Any:
    from monai.transforms import SpatialPadd

    return SpatialPadd(keys=("image", "label", "dist"), spatial_size=spec.patch, allow_missing_keys=True)
