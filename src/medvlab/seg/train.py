"""Training recipe for 3-D segmentation: cached data, Dice-CE, AMP, validation Dice, resume, DDP.

It reads top to bottom: :func:`setup` builds everything a run needs into a :class:`Run`,
:func:`fit_epoch` makes one pass over the training crops, :func:`validate` scores the validation
volumes, and :func:`train_segmentation` loops over the epochs, keeping the best and last checkpoints,
``metrics.csv`` and ``curves.png``. What follows from the device (which accelerator a rank uses, the
process-group backend, the autocast dtype, loss scaling) is decided by :mod:`medvlab.devices`.

Multi-GPU and multi-node runs use the same command under ``torchrun``: when ``WORLD_SIZE`` > 1 the
process group is joined (NCCL on CUDA, HCCL on Ascend, CNCL on MLU, Gloo on CPU), the network is
wrapped in DistributedDataParallel, each rank reads its share of the volumes (DistributedSampler), and
rank 0 validates, writes checkpoints and curves.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from medvlab.devices import DeviceInfo, autocast, grad_scaler, join_process_group, resolve_device
from medvlab.errors import ConfigError
from medvlab.seg.config import SegTrainConfig as SegTrainConfig
from medvlab.seg.data import argmax_channels
from medvlab.seg.infer import InferenceOptions, window_logits
from medvlab.seg.model import SegSpec, build_network, save_checkpoint
from medvlab.seg.trainset import build_spec as build_spec
from medvlab.seg.trainset import split, train_loader, validation_volumes

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, int, dict[str, float]], None]
VALIDATION = InferenceOptions(overlap=0.25, sw_batch_size=2, crop_foreground=False)
"""How validation slides its windows (``amp`` follows the run)."""


@dataclass
class TrainResult:
    output_dir: Path
    best_dice: float
    best_epoch: int
    epochs_run: int
    rows: list[dict[str, float]]


@dataclass
class DistContext:
    """This process's place in a torchrun job (one process: rank 0 of 1)."""

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
        """The place torchrun gives this process in its environment (none: rank 0 of 1)."""
        env = os.environ
        return cls(
            int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))
        )

    def join(self, device: DeviceInfo) -> None:
        """Join the job's process group, with ``device`` as this process's own (a no-op for one process)."""
        if self.enabled:
            join_process_group(device)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def leave(self) -> None:
        if self.enabled:
            dist.destroy_process_group()


@dataclass
class Run:
    """Everything one training run works with, built by :func:`setup`."""

    cfg: SegTrainConfig
    dist: DistContext
    device_info: DeviceInfo
    spec: SegSpec
    net: torch.nn.Module
    """The bare network: validated and saved."""
    model: torch.nn.Module
    """What trains: ``net``, or DistributedDataParallel around it."""
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loader: Any
    sampler: torch.utils.data.Sampler[int]
    val_data: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    """Whole validation volumes and labels in network space (rank 0 only)."""
    start_epoch: int = 0
    best: float = -1.0
    best_epoch: int = -1
    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return torch.device(self.device_info.torch_device)

    @property
    def out(self) -> Path:
        return self.cfg.output_dir


def train_segmentation(cfg: SegTrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train (or resume) a segmentation network; writes best.pt, last.pt, metrics.csv, curves.png."""
    run = setup(cfg)
    for epoch in range(run.start_epoch, cfg.epochs):
        row = fit_epoch(run, epoch)
        if run.dist.main:
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                row.update(validate(run))
                if row["val_dice"] > run.best:
                    run.best, run.best_epoch = row["val_dice"], epoch + 1
                    save_checkpoint(
                        run.out / "best.pt", run.spec, run.net, {"val_dice": run.best, "epoch": epoch + 1}
                    )
            run.rows.append(row)
            _write_rows(run.out / "metrics.csv", run.rows)
            save_last(run, epoch)
            if on_epoch:
                on_epoch(epoch + 1, cfg.epochs, row)
        run.dist.barrier()
    if run.dist.main:
        plot_curves(run.rows, run.out / "curves.png")
    run.dist.barrier()
    run.dist.leave()
    return TrainResult(run.out, run.best, run.best_epoch, cfg.epochs - run.start_epoch, run.rows)


def setup(cfg: SegTrainConfig) -> Run:
    """Device and process group, data, network, loss, optimizer, schedule and scaler; resumed from
    ``last.pt`` when ``cfg.resume`` and it exists."""
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    ctx = DistContext.from_env()
    device = resolve_device(cfg.device, dtype="float32")
    if ctx.enabled:
        device = device.for_local_rank(ctx.local_rank)
        ctx.join(device)
    set_determinism(cfg.seed + ctx.rank)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)

    train_pairs, val_pairs = split(cfg)
    spec = build_spec(cfg, train_pairs)
    loader, sampler = train_loader(cfg, spec, train_pairs, ctx.rank, ctx.world)
    net: torch.nn.Module = build_network(spec).to(device.torch_device)
    model = (
        torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.kind == "cuda" else None
        )
        if ctx.enabled
        else net
    )
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Closed-form cosine (a function of the epoch only), so a resumed run that asks for more epochs
    # follows the new schedule instead of CosineAnnealingLR's recursive one restarting from lr 0.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / cfg.epochs))
    )
    run = Run(
        cfg=cfg,
        dist=ctx,
        device_info=device,
        spec=spec,
        net=net,
        model=model,
        loss_fn=DiceCELoss(to_onehot_y=True, softmax=True),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=grad_scaler(device, device.autocast_dtype(cfg.amp)),
        loader=loader,
        sampler=sampler,
    )
    resume(run)
    if ctx.main:
        run.val_data = validation_volumes(val_pairs, spec, cfg.binarize)
    return run


def resume(run: Run) -> None:
    """Load weights, optimizer, schedule, scaler and history from ``last.pt`` when asked to resume."""
    if not run.cfg.resume:
        return
    last_path = run.out / "last.pt"
    if not last_path.exists():
        logger.warning("--resume: no %s yet, starting from scratch", last_path)
        return
    state = torch.load(last_path, map_location="cpu", weights_only=True)
    if SegSpec.from_dict(state["spec"]) != run.spec:
        raise ConfigError(
            f"{last_path} was trained with other settings than these.",
            "Resume with the same flags, or pick a new --output.",
        )
    run.net.load_state_dict(state["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.best, run.best_epoch = (
        int(state["epoch"]) + 1,
        float(state["best"]),
        int(state["best_epoch"]),
    )
    run.rows = _read_rows(run.out / "metrics.csv")[: run.start_epoch]
    logger.info(
        "resuming from epoch %d (best Dice %.4f at epoch %d)", run.start_epoch, run.best, run.best_epoch
    )


def save_last(run: Run, epoch: int) -> None:
    """``last.pt``: the weights plus everything :func:`resume` needs to continue after ``epoch``."""
    extra = {
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "best": run.best,
        "best_epoch": run.best_epoch,
    }
    save_checkpoint(run.out / "last.pt", run.spec, run.net, {"epoch": epoch + 1}, extra)


def fit_epoch(run: Run, epoch: int) -> dict[str, float]:
    """One pass over this epoch's training crops; returns the epoch's row of metrics."""
    if isinstance(run.sampler, torch.utils.data.DistributedSampler):
        run.sampler.set_epoch(epoch)
    run.model.train()
    t0, losses, crops = time.perf_counter(), [], 0
    for batch in run.loader:
        x, y = batch["image"].to(run.device), batch["label"].to(run.device)
        run.optimizer.zero_grad(set_to_none=True)
        with autocast(run.device_info, run.cfg.amp):
            loss = run.loss_fn(run.model(x), y)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        losses.append(float(loss.detach()))
        crops += int(x.shape[0])
    run.scheduler.step()
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch + 1,
        "train_loss": statistics.fmean(losses) if losses else float("nan"),
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "seconds": round(seconds, 3),
        "crops_per_s": round(crops * run.dist.world / max(seconds, 1e-9), 3),
    }


def validate(run: Run) -> dict[str, float]:
    """Mean Dice over the validation volumes, overall and per structure (network space).

    MONAI's functional ``compute_dice``, not ``DiceMetric``: the metric object all-gathers across
    ranks when a process group exists, which deadlocks when only rank 0 validates.
    """
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(run.device_info, run.cfg.amp):
            return run.net(x).float()

    n = run.spec.num_classes
    options = replace(VALIDATION, amp=run.cfg.amp)
    run.net.eval()
    scores_per_case = []
    for x, y in run.val_data:
        scores = window_logits(forward, x, run.spec, options, run.device)
        pred = one_hot(argmax_channels(scores).long()[None, None], n)
        truth = one_hot(y[None].long(), n)
        scores_per_case.append(compute_dice(pred, truth, include_background=False, ignore_empty=False)[0])
    per = torch.stack(scores_per_case).nanmean(0).tolist()
    run.net.train()
    out = {"val_dice": float(np.nanmean(per))}
    out.update({f"val_dice_{label.name}": float(v) for label, v in zip(run.spec.labels, per, strict=True)})
    return out


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
