"""Configuration of a segmentation training run: one documented field per ``medvlab seg train`` flag.

The attribute docstrings are the flags' help text (the CLI generates its options from this class), and
``__post_init__`` checks every value when the configuration is built, so a bad setting fails with a
:class:`~medvlab.errors.ConfigError` before any data is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medvlab.errors import ConfigError, look_up_option

INTENSITIES = ("percentile", "ct")


@dataclass
class SegTrainConfig:
    """Options of ``medvlab seg train`` (see its --help); checked when built."""

    images: list[str]
    """Image files, folders or globs (repeatable)."""
    labels: list[str]
    """Label files in the same sorted order (repeatable)."""
    output_dir: Path = Path("runs/seg")
    """Folder for checkpoints and curves."""
    val_images: list[str] = field(default_factory=list)
    """Validation images (default: 20% held out)."""
    val_labels: list[str] = field(default_factory=list)
    """Validation labels."""
    net: str = "unet"
    """unet, segresnet or swinunetr."""
    width: int = 16
    """Channels of the first level (model size)."""
    patch: int | tuple[int, int, int] = 96
    """Cubic training patch / sliding window size (voxels).

    In Python also three sizes (x, y, z) for a box."""
    spacing: tuple[float, float, float] | None = None
    """Voxel size in mm, e.g. 2 or 1.5,1.5,2 (default: median).

    None: the median voxel size of the training images."""
    label_names: list[str] | None = None
    """Names of label values 1..N, comma separated.

    None: ``foreground`` with ``binarize``, else ``label_1`` ... up to the largest value found."""
    binarize: bool = False
    """Treat every non-zero label voxel as one structure."""
    intensity: str = "percentile"
    """percentile (MR) or ct (HU -1000..1000)."""
    synth_head: bool = False
    """Paint random skull/scalp around skull-stripped images."""
    largest_component: bool = False
    """Keep the largest piece per structure."""
    epochs: int = 50
    """Passes over the training volumes."""
    steps_per_epoch: int | None = None
    """Volumes drawn per epoch.

    None: each training volume once."""
    batch_size: int = 1
    """Volumes per step."""
    num_samples: int = 2
    """Random crops per volume (pos/neg balanced).

    A batch holds batch_size x num_samples crops."""
    lr: float = 1e-3
    """Peak learning rate (AdamW, cosine decay to 0 over the epochs)."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    amp: bool = False
    """Mixed precision (fp16/bf16 on GPU, bf16 on CPU)."""
    device: str | None = None
    """cuda, cuda:1, npu, mlu, mps, xpu or cpu (default: best found)."""
    seed: int = 0
    """Random seed (each distributed rank adds its rank)."""
    val_every: int = 1
    """Validate every N epochs."""
    resume: bool = False
    """Continue from OUTPUT/last.pt."""
    workers: int = 0
    """Data-loader worker processes."""
    augment: bool = True
    """Random flips, affine and intensity jitter on the training crops."""

    def __post_init__(self) -> None:
        from medvlab.seg.model import NETS  # here: the CLI imports this module, and must not pay for torch

        self.output_dir = Path(self.output_dir)
        if not self.images:
            raise ConfigError("No training images were given.", "Pass --images and --labels.")
        self.net = look_up_option(self.net, NETS, "network")
        self.intensity = look_up_option(self.intensity, INTENSITIES, "intensity scaling")
        for name, flag in (
            ("width", "--width"),
            ("epochs", "--epochs"),
            ("batch_size", "--batch-size"),
            ("num_samples", "--samples"),
            ("val_every", "--val-every"),
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1, got {getattr(self, name)}.", f"Set {flag} 1 or more."
                )
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(
                f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}.",
                "Set --steps-per-epoch 1 or more, or leave it out (each volume once per epoch).",
            )
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {self.workers}.", "Use e.g. --workers 4.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"The learning rate must be positive, got {self.lr}.", "Use e.g. --lr 1e-3.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be 0 or more, got {self.weight_decay}.", "Use e.g. 1e-5.")
        self.patch = _patch(self.patch)
        if self.spacing is not None:
            self.spacing = _spacing(self.spacing)
        if self.label_names is not None:
            self.label_names = list(self.label_names)
            if not self.label_names or not all(n.strip() for n in self.label_names):
                raise ConfigError(
                    f"label_names {self.label_names} has an empty name.",
                    "Give one name per label value, e.g. --label-names liver,spleen.",
                )

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """The training patch as (x, y, z) voxels."""
        return (self.patch,) * 3 if isinstance(self.patch, int) else self.patch


def _patch(patch: int | Sequence[int]) -> int | tuple[int, int, int]:
    """One size (a cube) or three, each a positive whole number of voxels."""
    sizes = [patch] if isinstance(patch, int) else list(patch)
    if len(sizes) != (1 if isinstance(patch, int) else 3) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in sizes
    ):
        raise ConfigError(
            f"patch {patch!r} must be one or three positive whole numbers of voxels.",
            "Use e.g. --patch 96 (or three sizes in Python).",
        )
    return sizes[0] if isinstance(patch, int) else (sizes[0], sizes[1], sizes[2])


def _spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Three positive voxel sizes in mm."""
    try:
        mm = [float(s) for s in spacing]
    except (TypeError, ValueError):
        mm = []
    if len(mm) != 3 or not all(math.isfinite(s) and s > 0 for s in mm):
        raise ConfigError(
            f"spacing {spacing!r} must be three positive voxel sizes in mm.",
            "Use e.g. --spacing 2 or 1.5,1.5,2.",
        )
    return (mm[0], mm[1], mm[2])
