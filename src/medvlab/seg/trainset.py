"""The data of a segmentation training run: the train/validation split, the :class:`SegSpec` it implies
(structure names, voxel spacing), the cached and sampled training loader, and the validation volumes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medvlab.errors import ConfigError
from medvlab.seg.config import SegTrainConfig
from medvlab.seg.data import (
    LoadPreparedd,
    pad_to_patch,
    prepare,
    prepare_label,
    to_ras,
    training_transforms,
)
from medvlab.seg.files import is_dicom_seg, load_label, load_volume, pair
from medvlab.seg.model import BRAIN, TISSUE, LabelInfo, SegSpec

logger = logging.getLogger(__name__)

Pairs = list[tuple[Path, Path]]


def split(cfg: SegTrainConfig) -> tuple[Pairs, Pairs]:
    """(training, validation) image/label pairs: the --val-* files, else the last 20% held out."""
    pairs = pair(cfg.images, cfg.labels)
    if cfg.val_images or cfg.val_labels:
        return pairs, pair(cfg.val_images, cfg.val_labels)
    if len(pairs) == 1:
        logger.warning("one training volume and no --val-images: validating on the training volume")
        return pairs, pairs
    n_val = max(1, len(pairs) // 5)
    return pairs[:-n_val], pairs[-n_val:]


def build_spec(cfg: SegTrainConfig, pairs: Pairs) -> SegSpec:
    """The network spec the settings and the training data call for."""
    names = _label_names(cfg, pairs)
    infos = [LabelInfo(n, TISSUE, BRAIN if n.lower() == "brain" else TISSUE) for n in names]
    return SegSpec(
        net=cfg.net,
        width=cfg.width,
        labels=infos,
        patch=cfg.patch_size,
        spacing=cfg.spacing or _median_spacing([img for img, _ in pairs]),
        intensity=cfg.intensity,
        largest_component=cfg.largest_component,
    )


def _median_spacing(paths: list[Path]) -> tuple[float, float, float]:
    """Median RAS voxel size of the training images (NIfTI headers only; DICOM is loaded)."""
    found = []
    for p in paths:
        if p.name.lower().endswith((".nii", ".nii.gz")):
            img: Any = nib.load(str(p))
            ornt = nib.orientations.io_orientation(img.affine)
            zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
            found.append(zooms[np.argsort(ornt[:, 0])])
        else:
            image = load_volume(p)
            found.append(to_ras(image.pixels[:1], image.affine)[2])
    med = np.median(np.stack(found), axis=0)
    return (float(med[0]), float(med[1]), float(med[2]))


def _label_names(cfg: SegTrainConfig, pairs: Pairs) -> list[str]:
    if cfg.label_names:
        return list(cfg.label_names)
    if cfg.binarize:
        return ["foreground"]
    # the image is read only when the label is a DICOM SEG, which needs it as its grid
    top = max(
        int(np.max(load_label(lab, load_volume(img) if is_dicom_seg(lab) else None).pixels))
        for img, lab in pairs
    )
    if top < 1:
        raise ConfigError("The labels hold no foreground voxels.", "Check --labels (or use --binarize).")
    return [f"label_{i}" for i in range(1, top + 1)]


def train_loader(
    cfg: SegTrainConfig, spec: SegSpec, pairs: Pairs, rank: int = 0, world: int = 1
) -> tuple[Any, torch.utils.data.Sampler[int]]:
    """The training loader (volumes prepared once and cached, random crops drawn per step) and its
    sampler: ``steps_per_epoch`` volumes per epoch, shared out between ranks when ``world`` > 1."""
    from monai.data import CacheDataset, DataLoader, list_data_collate
    from monai.transforms import Compose

    items = [{"image": str(i), "label": str(lab)} for i, lab in pairs]
    transform = Compose(
        [
            LoadPreparedd(spec, cfg.binarize, cfg.synth_head),
            pad_to_patch(spec),
            *training_transforms(spec, cfg.num_samples, cfg.synth_head, cfg.augment),
        ]
    )
    dataset = CacheDataset(items, transform=transform, cache_rate=1.0, num_workers=None, progress=False)
    visits = cfg.steps_per_epoch or len(items)
    subset = torch.utils.data.Subset(dataset, [i % len(items) for i in range(visits)])
    sampler: torch.utils.data.Sampler[int] = (
        torch.utils.data.DistributedSampler(subset, world, rank, shuffle=True, seed=cfg.seed)
        if world > 1
        else torch.utils.data.RandomSampler(subset)
    )
    loader = DataLoader(
        subset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=list_data_collate,
        persistent_workers=cfg.workers > 0,
    )
    return loader, sampler


def validation_volumes(
    pairs: Pairs, spec: SegSpec, binarize: bool
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each validation image and its label, whole, in network space."""
    out = []
    for image_path, label_path in pairs:
        image = load_volume(image_path)
        x, geo = prepare(image, spec)
        out.append((x, prepare_label(load_label(label_path, image), geo, spec, binarize)))
    return out
