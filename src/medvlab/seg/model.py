"""Segmentation network specs and checkpoints.

A checkpoint is one ``torch.save`` file holding plain types and tensors only (so it loads with
``weights_only=True``): the :class:`SegSpec` that says how to build the network and how to
preprocess its input, the weights, and the metrics it was chosen by. Networks come from MONAI.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medvlab.errors import ConfigError, NotFoundError, look_up_option

logger = logging.getLogger(__name__)

NETS = ("unet", "segresnet", "swinunetr")
FORMAT = "medvlab-seg/1"
BUILTIN = {"brain-mask": "brain_mask_mni152.pt"}
"""Checkpoints shipped in the package, by name (see docs/segmentation.md for how they were trained)."""

# SNOMED CT codes for DICOM SEG segment descriptions: (code value, scheme, meaning).
TISSUE = ("85756007", "SCT", "Tissue")
BRAIN = ("12738006", "SCT", "Brain")


@dataclass
class LabelInfo:
    """One foreground structure: its name and the SNOMED codes DICOM SEG needs."""

    name: str
    category: tuple[str, str, str] = TISSUE
    type: tuple[str, str, str] = TISSUE


@dataclass
class SegSpec:
    """Everything needed to rebuild a network and feed it like it was trained."""

    net: str = "unet"
    width: int = 16
    """Channels of the first level (UNet/SegResNet) or the feature size (SwinUNETR)."""
    labels: list[LabelInfo] = field(default_factory=lambda: [LabelInfo("foreground")])
    """Foreground structures; label value ``i + 1`` is ``labels[i]``, 0 is background."""
    patch: tuple[int, int, int] = (96, 96, 96)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Voxel size (mm) along the canonical RAS axes the network sees."""
    intensity: str = "percentile"
    """``percentile``: scale the 0.5-99.5th percentile to 0-1 (MR); ``ct``: -1000..1000 HU to 0-1."""
    largest_component: bool = False
    """Keep only the largest connected component of each structure (one brain, one liver, ...)."""

    @property
    def num_classes(self) -> int:
        return len(self.labels) + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegSpec:
        d = dict(d)
        d["labels"] = [
            LabelInfo(x["name"], tuple(x["category"]), tuple(x["type"])) for x in d.get("labels", [])
        ]
        d["patch"] = tuple(int(p) for p in d["patch"])
        d["spacing"] = tuple(float(s) for s in d["spacing"])
        return cls(**d)


def build_network(spec: SegSpec) -> nn.Module:
    """The MONAI network a spec names, with random weights."""
    name = look_up_option(spec.net, NETS, "network")
    multiple = {"unet": 16, "segresnet": 8, "swinunetr": 32}[name]
    if any(p % multiple for p in spec.patch):
        raise ConfigError(
            f"{name} needs patch sizes divisible by {multiple}, got {spec.patch}.",
            f"Use --patch {max(multiple, 64)} or another multiple of {multiple}.",
        )
    w = spec.width
    if name == "unet":
        from monai.networks.nets import UNet

        return UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=spec.num_classes,
            channels=(w, 2 * w, 4 * w, 8 * w, 16 * w),
            strides=(2, 2, 2, 2),
            num_res_units=2,
            norm="instance",
        )
    if name == "segresnet":
        from monai.networks.nets import SegResNet

        groups = max(g for g in (1, 2, 4, 8) if w % g == 0)
        return SegResNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=spec.num_classes,
            init_filters=w,
            norm=("GROUP", {"num_groups": groups}),
        )
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        in_channels=1, out_channels=spec.num_classes, feature_size=max(12, w - w % 12), spatial_dims=3
    )


@dataclass
class SegCheckpoint:
    """A spec, its weights and the metrics it was saved with."""

    spec: SegSpec
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    def network(self, device: str | torch.device = "cpu") -> nn.Module:
        net = build_network(self.spec)
        net.load_state_dict(self.state_dict)
        return net.to(device).eval()


def save_checkpoint(
    path: Path, spec: SegSpec, net: nn.Module, metrics: dict[str, float], extra: dict[str, Any] | None = None
) -> Path:
    """Write a checkpoint atomically (a crash mid-write never leaves a broken best.pt)."""
    module: nn.Module = getattr(net, "module", net)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    payload = {"format": FORMAT, "spec": spec.to_dict(), "state_dict": state, "metrics": metrics}
    payload.update(extra or {})
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def resolve_checkpoint(ref: str | Path) -> Path:
    """A checkpoint path from a file path or a built-in name such as ``brain-mask``."""
    if str(ref) in BUILTIN:
        return Path(str(resources.files("medvlab.seg") / "models" / BUILTIN[str(ref)]))
    path = Path(ref).expanduser()
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).exists():
                return path / name
    if not path.exists():
        raise NotFoundError(
            f"Segmentation model '{ref}' does not exist.",
            "Pass a checkpoint written by 'medvlab seg train' (best.pt) "
            f"or a built-in: {', '.join(BUILTIN)}.",
        )
    return path


def load_checkpoint(ref: str | Path) -> SegCheckpoint:
    """Read a checkpoint (path or built-in name); a foreign or damaged file is a clear error."""
    path = resolve_checkpoint(ref)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds for a file that is not a checkpoint
        raise ConfigError(
            f"'{path}' is not a readable segmentation checkpoint ({exc}).",
            "Pass a best.pt written by 'medvlab seg train'.",
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(
            f"'{path}' is not a medvlab segmentation checkpoint.",
            "Pass a best.pt written by 'medvlab seg train'.",
        )
    spec = SegSpec.from_dict(payload["spec"])
    return SegCheckpoint(spec, payload["state_dict"], dict(payload.get("metrics", {})), path)
