"""Sliding-window prediction of a whole volume, and what comes out of it: labels, volumes, files.

The window loop is MONAI's :class:`~monai.inferers.SlidingWindowInferer` (Gaussian blending, overlap);
around it this module adds what makes a study fast on a CPU or GPU: the network runs under
``inference_mode`` with several windows per batch, optionally in bf16/fp16 autocast, channels-last
memory and ``torch.compile``, and only over the bounding box of the body/head (air costs nothing).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medvlab.devices import autocast, compile_module, resolve_device
from medvlab.imaging.types import MedImage
from medvlab.seg.data import Geometry, prepare, to_image_space
from medvlab.seg.model import SegCheckpoint, SegSpec, load_checkpoint

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class InferenceOptions:
    """Speed knobs of sliding-window inference; defaults are safe on every device."""

    overlap: float = 0.5
    sw_batch_size: int = 4
    amp: bool = False
    """Autocast to bf16 (CPU with AMX/AVX512-BF16, recent GPUs) or fp16 (older GPUs)."""
    channels_last: bool = False
    compile: bool = False
    crop_foreground: bool = True
    """Run the network only inside the bounding box of non-air voxels (plus a margin)."""


@dataclass
class Segmentation:
    """Labels on the input image's own grid, with the structures' names and volumes."""

    labels: np.ndarray
    """uint8 (slice, row, col), same shape as the input image; 0 is background."""
    names: list[str]
    volumes_ml: dict[str, float]
    spec: SegSpec
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "structures": self.names,
            "volumes_ml": self.volumes_ml,
            "shape": list(self.labels.shape),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


def foreground_box(
    x: torch.Tensor, margin: int, threshold: float = 0.02
) -> tuple[slice, slice, slice] | None:
    """Bounding box of voxels brighter than ``threshold`` (after 0-1 scaling), or None if all dark."""
    from monai.transforms.utils import generate_spatial_bounding_box

    start, end = generate_spatial_bounding_box(
        x, select_fn=lambda v: v > threshold, margin=margin, allow_smaller=True
    )
    if all(s == e for s, e in zip(start, end, strict=True)):  # MONAI's answer for "nothing selected"
        return None
    return slice(start[0], end[0]), slice(start[1], end[1]), slice(start[2], end[2])


def window_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    spec: SegSpec,
    options: InferenceOptions,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Sliding-window class scores (C, X, Y, Z) of ``forward`` over a prepared (1, X, Y, Z) volume.

    Used by prediction and by validation during training, so both score the same way. ``progress`` is
    called with (batches done, batches in all) as the windows run.
    """
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(
        roi_size=spec.patch,
        sw_batch_size=options.sw_batch_size,
        overlap=options.overlap,
        mode="gaussian",
        sw_device=device,
        device=torch.device("cpu"),
        progress=False,
    )
    box = foreground_box(x, margin=max(spec.patch) // 8) if options.crop_foreground else None
    if options.crop_foreground and box is None:  # an all-dark volume: nothing but background
        out = torch.zeros((spec.num_classes, *x.shape[1:]))
        out[0] = 1
        return out
    region = x[(slice(None), *box)] if box is not None else x
    run = forward
    if progress is not None:
        report = progress
        total = math.ceil(window_count(region.shape[1:], spec.patch, options.overlap) / options.sw_batch_size)
        done = [0]

        def counted(batch: torch.Tensor) -> torch.Tensor:
            out = forward(batch)
            done[0] += 1
            report(done[0], total)
            return out

        run = counted
    with torch.inference_mode():
        scores = inferer(region[None].to(device), run)[0]
    if box is None:
        return scores.cpu()
    full = torch.full((spec.num_classes, *x.shape[1:]), -1e4)
    full[0] = 1e4  # outside the box: background
    full[(slice(None), *box)] = scores.cpu()
    return full


def window_count(shape: Sequence[int], patch: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's sliding-window inferer runs over ``shape`` (its scan-interval rule)."""
    n = 1
    for size, roi in zip(shape, patch, strict=True):
        step = max(int(roi * (1 - overlap)), 1) if roi < size else roi
        n *= math.ceil(max(size - roi, 0) / step) + 1
    return n


class Predictor:
    """A loaded network plus its spec, ready to segment volumes (thread-safe for sequential use)."""

    def __init__(
        self,
        checkpoint: SegCheckpoint,
        device: str | torch.device = "cpu",
        options: InferenceOptions | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.spec = checkpoint.spec
        self.device = torch.device(device)
        self.device_info = resolve_device(str(self.device), dtype="float32")
        """The device layer decides the autocast dtype and the torch.compile backend."""
        self.options = options or InferenceOptions()
        net = checkpoint.network(self.device)
        if self.options.channels_last:
            net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.net: nn.Module = net
        self._forward: Callable[[torch.Tensor], torch.Tensor] = (
            compile_module(net, self.device_info) if self.options.compile else net
        )

    @classmethod
    def load(
        cls, ref: str | Path, device: str | torch.device = "cpu", options: InferenceOptions | None = None
    ) -> Predictor:
        return cls(load_checkpoint(ref), device, options)

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last_3d)
        with autocast(self.device_info, self.options.amp):
            out = self._forward(batch)
        return out.float()

    def logits(self, x: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """Class scores (C, X, Y, Z) for a prepared (1, X, Y, Z) volume, by Gaussian-blended windows."""
        return window_logits(self._run, x, self.spec, self.options, self.device, progress)

    def predict(self, image: MedImage, progress: Progress | None = None) -> Segmentation:
        """Segment a volume: labels on its own grid and each structure's volume in millilitres."""
        t0 = time.perf_counter()
        x, geo = prepare(image, self.spec)
        t1 = time.perf_counter()
        scores = self.logits(x, progress)
        t2 = time.perf_counter()
        labels = self.postprocess(scores, geo)
        t3 = time.perf_counter()
        names = [label.name for label in self.spec.labels]
        return Segmentation(
            labels=labels,
            names=names,
            volumes_ml=volumes_ml(labels, image.spacing, names),
            spec=self.spec,
            timings={"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2},
        )

    def postprocess(self, scores: torch.Tensor, geo: Geometry) -> np.ndarray:
        probs = torch.softmax(scores, dim=0)
        labels = to_image_space(probs, geo)
        if self.spec.largest_component:
            labels = keep_largest_component(labels, self.spec.num_classes)
        return labels


def keep_largest_component(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Zero every connected piece of each structure except its largest.

    scipy's labelling rather than MONAI's KeepLargestConnectedComponent, which needs scikit-image
    (a large dependency for this one call) on CPU arrays.
    """
    from scipy import ndimage

    out = labels.copy()
    for value in range(1, num_classes):
        pieces, n = ndimage.label(labels == value)
        if n > 1:
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            out[(pieces != int(sizes.argmax())) & (labels == value)] = 0
    return out


def volumes_ml(labels: np.ndarray, spacing: tuple[float, float, float], names: list[str]) -> dict[str, float]:
    """Volume of each structure in millilitres (voxel count x voxel volume)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
    return {name: round(float(counts[i + 1]) * voxel_ml, 2) for i, name in enumerate(names)}
