"""Training loop for 3-D segmentation: cached data, Dice-CE, AMP, validation Dice, resume, DDP.

Multi-GPU and multi-node runs use the same command under ``torchrun``: when ``WORLD_SIZE`` > 1 the
process group is joined (NCCL on CUDA, Gloo on CPU), the network is wrapped in
DistributedDataParallel, each rank reads its share of the volumes (DistributedSampler), and rank 0
validates, writes checkpoints and curves.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.distributed as dist

from medvlab.devices import resolve_device
from medvlab.errors import ConfigError
from medvlab.seg.data import (
    LoadPreparedd,
    argmax_channels,
    is_dicom_seg,
    load_label,
    load_volume,
    pad_to_patch,
    pair,
    prepare,
    prepare_label,
    to_ras,
    training_transforms,
)
from medvlab.seg.infer import InferenceOptions, autocast_dtype, window_logits
from medvlab.seg.model import BRAIN, TISSUE, LabelInfo, SegSpec, build_network, save_checkpoint

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, int, dict[str, float]], None]


@dataclass
class SegTrainConfig:
    """Options of ``medvlab seg train`` (see its --help)."""

    images: list[str]
    labels: list[str]
    output_dir: Path
    val_images: list[str] = field(default_factory=list)
    val_labels: list[str] = field(default_factory=list)
    net: str = "unet"
    width: int = 16
    patch: int | tuple[int, int, int] = 96
    spacing: tuple[float, float, float] | None = None
    label_names: list[str] | None = None
    binarize: bool = False
    intensity: str = "percentile"
    synth_head: bool = False
    largest_component: bool = False
    epochs: int = 50
    steps_per_epoch: int | None = None
    """Volumes drawn per epoch (default: each training volume once)."""
    batch_size: int = 1
    num_samples: int = 2
    """Random crops taken from each drawn volume (a batch holds batch_size x num_samples crops)."""
    lr: float = 1e-3
    weight_decay: float = 1e-5
    amp: bool = False
    device: str | None = None
    seed: int = 0
    val_every: int = 1
    resume: bool = False
    workers: int = 0
    augment: bool = True


@dataclass
class TrainResult:
    output_dir: Path
    best_dice: float
    best_epoch: int
    epochs_run: int
    rows: list[dict[str, float]]


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Join the process group torchrun describes in the environment (a no-op for one process)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _spacing(paths: list[Path]) -> tuple[float, float, float]:
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


def _label_names(cfg: SegTrainConfig, pairs: list[tuple[Path, Path]]) -> list[str]:
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


def build_spec(cfg: SegTrainConfig, pairs: list[tuple[Path, Path]]) -> SegSpec:
    patch = (cfg.patch,) * 3 if isinstance(cfg.patch, int) else tuple(cfg.patch)
    names = _label_names(cfg, pairs)
    infos = [LabelInfo(n, TISSUE, BRAIN if n.lower() == "brain" else TISSUE) for n in names]
    return SegSpec(
        net=cfg.net,
        width=cfg.width,
        labels=infos,
        patch=patch,  # type: ignore[arg-type]
        spacing=cfg.spacing or _spacing([img for img, _ in pairs]),
        intensity=cfg.intensity,
        largest_component=cfg.largest_component,
    )


def _split(cfg: SegTrainConfig) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    pairs = pair(cfg.images, cfg.labels)
    if cfg.val_images or cfg.val_labels:
        return pairs, pair(cfg.val_images, cfg.val_labels)
    if len(pairs) == 1:
        logger.warning("one training volume and no --val-images: validating on the training volume")
        return pairs, pairs
    n_val = max(1, len(pairs) // 5)
    return pairs[:-n_val], pairs[-n_val:]


def train_segmentation(cfg: SegTrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train (or resume) a segmentation network; writes best.pt, last.pt, metrics.csv, curves.png."""
    from monai.data import CacheDataset, DataLoader, list_data_collate
    from monai.losses import DiceCELoss
    from monai.transforms import Compose
    from monai.utils import set_determinism

    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.num_samples < 1:
        raise ConfigError("epochs, batch size and samples must be at least 1.", "Check the flags.")
    ctx = DistContext.from_env()
    if ctx.enabled and torch.cuda.is_available():
        device = torch.device(f"cuda:{ctx.local_rank}")
        torch.cuda.set_device(device)
    else:
        device = torch.device(resolve_device(cfg.device, dtype="float32").torch_device)
    set_determinism(cfg.seed + ctx.rank)
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)

    train_pairs, val_pairs = _split(cfg)
    spec = build_spec(cfg, train_pairs)
    items = [{"image": str(i), "label": str(lab)} for i, lab in train_pairs]
    transform = Compose(
        [
            LoadPreparedd(spec, cfg.binarize, cfg.synth_head),
            pad_to_patch(spec),
            *training_transforms(spec, cfg.num_samples, cfg.synth_head, cfg.augment),
        ]
    )
    dataset = CacheDataset(items, transform=transform, cache_rate=1.0, num_workers=None, progress=False)
    visits = cfg.steps_per_epoch or len(items)
    indices = [i % len(items) for i in range(visits)]
    subset = torch.utils.data.Subset(dataset, indices)
    sampler: torch.utils.data.Sampler[int] = (
        torch.utils.data.DistributedSampler(subset, ctx.world, ctx.rank, shuffle=True, seed=cfg.seed)
        if ctx.enabled
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

    net: torch.nn.Module = build_network(spec).to(device)
    model: torch.nn.Module = (
        torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
        if ctx.enabled
        else net
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Closed-form cosine (a function of the epoch only), so a resumed run that asks for more epochs
    # follows the new schedule instead of CosineAnnealingLR's recursive one restarting from lr 0.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / cfg.epochs))
    )
    amp_dtype = autocast_dtype(device) if cfg.amp else None
    scaler = _grad_scaler(device, amp_dtype == torch.float16)

    start, best, best_epoch, rows = 0, -1.0, -1, []
    last_path = out / "last.pt"
    if cfg.resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if SegSpec.from_dict(state["spec"]) != spec:
            raise ConfigError(
                f"{last_path} was trained with other settings than these.",
                "Resume with the same flags, or pick a new --output.",
            )
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, best, best_epoch = int(state["epoch"]) + 1, float(state["best"]), int(state["best_epoch"])
        rows = _read_rows(out / "metrics.csv")[:start]
        logger.info("resuming from epoch %d (best Dice %.4f at epoch %d)", start, best, best_epoch)
    elif cfg.resume:
        logger.warning("--resume: no %s yet, starting from scratch", last_path)

    val_data = [_prepare_pair(p, spec, cfg.binarize) for p in val_pairs] if ctx.main else []
    val_opts = InferenceOptions(overlap=0.25, sw_batch_size=2, amp=cfg.amp, crop_foreground=False)

    for epoch in range(start, cfg.epochs):
        if isinstance(sampler, torch.utils.data.DistributedSampler):
            sampler.set_epoch(epoch)
        model.train()
        t0, losses, crops = time.perf_counter(), [], 0
        for batch in loader:
            x, y = batch["image"].to(device), batch["label"].to(device)
            opt.zero_grad(set_to_none=True)
            ctx_amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
            with ctx_amp:
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            crops += int(x.shape[0])
        sched.step()
        seconds = time.perf_counter() - t0
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": statistics.fmean(losses) if losses else float("nan"),
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": round(seconds, 3),
            "crops_per_s": round(crops * ctx.world / max(seconds, 1e-9), 3),
        }
        validate = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs
        if ctx.main:
            if validate:
                row.update(_validate(net, val_data, spec, val_opts, device))
                if row["val_dice"] > best:
                    best, best_epoch = row["val_dice"], epoch + 1
                    save_checkpoint(out / "best.pt", spec, net, {"val_dice": best, "epoch": epoch + 1})
            rows.append(row)
            _write_rows(out / "metrics.csv", rows)
            save_checkpoint(
                last_path,
                spec,
                net,
                {"epoch": epoch + 1},
                {
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "best": best,
                    "best_epoch": best_epoch,
                },
            )
            if on_epoch:
                on_epoch(epoch + 1, cfg.epochs, row)
        ctx.barrier()
    if ctx.main:
        plot_curves(rows, out / "curves.png")
    ctx.barrier()
    if ctx.enabled:
        dist.destroy_process_group()
    return TrainResult(out, best, best_epoch, cfg.epochs - start, rows)


def _grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """Loss scaling for fp16 training; a device whose stack has no GradScaler trains unscaled."""
    try:
        return torch.amp.GradScaler(device.type, enabled=enabled)
    except (RuntimeError, ValueError) as exc:  # e.g. a vendor device without scaler support
        logger.warning("no gradient scaler for %s (%s); fp16 training runs unscaled", device.type, exc)
        return torch.amp.GradScaler(device.type, enabled=False)


def _prepare_pair(p: tuple[Path, Path], spec: SegSpec, binarize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    image = load_volume(p[0])
    x, geo = prepare(image, spec)
    return x, prepare_label(load_label(p[1], image), geo, spec, binarize)


def _validate(
    net: torch.nn.Module,
    val_data: list[tuple[torch.Tensor, torch.Tensor]],
    spec: SegSpec,
    opts: InferenceOptions,
    device: torch.device,
) -> dict[str, float]:
    """Mean Dice over the validation volumes, overall and per structure (network space).

    MONAI's functional ``compute_dice``, not ``DiceMetric``: the metric object all-gathers across
    ranks when a process group exists, which deadlocks when only rank 0 validates.
    """
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    net.eval()
    forward = _autocast_forward(net, device, opts.amp)
    scores_per_case = []
    for x, y in val_data:
        scores = window_logits(forward, x, spec, opts, device)
        pred = one_hot(argmax_channels(scores).long()[None, None], spec.num_classes)
        truth = one_hot(y[None].long(), spec.num_classes)
        scores_per_case.append(compute_dice(pred, truth, include_background=False, ignore_empty=False)[0])
    per = torch.stack(scores_per_case).nanmean(0).tolist()
    net.train()
    out = {"val_dice": float(np.nanmean(per))}
    out.update({f"val_dice_{label.name}": float(v) for label, v in zip(spec.labels, per, strict=True)})
    return out


def _autocast_forward(
    net: torch.nn.Module, device: torch.device, amp: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=autocast_dtype(device)) if amp else nullcontext():
            return net(x).float()

    return forward


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _read_rows(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]
    for r in rows:
        r["epoch"] = int(r["epoch"])
    return rows


def plot_curves(rows: list[dict[str, float]], path: Path) -> Path | None:
    """Training loss and validation Dice per epoch, side by side."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [r["epoch"] for r in rows]
    ax1.plot(epochs, [r["train_loss"] for r in rows], linewidth=1.5)
    ax1.set_title("train loss (Dice + CE)")
    ax1.set_xlabel("epoch")
    val = [(r["epoch"], r["val_dice"]) for r in rows if "val_dice" in r]
    if val:
        ax2.plot(*zip(*val, strict=True), marker="o" if len(val) < 30 else None, color="tab:green")
    ax2.set_title("validation Dice")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
