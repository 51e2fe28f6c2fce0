"""Network specs and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medvlab.errors import ConfigError, NotFoundError
from medvlab.seg.model import LabelInfo, SegSpec, build_network, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("net", ["unet", "segresnet", "swinunetr"])
def test_each_network_maps_a_patch_to_class_scores(net: str) -> None:
    size = 64 if net == "swinunetr" else 32  # SwinUNETR downsamples 32x
    spec = SegSpec(
        net=net,
        width=12 if net == "swinunetr" else 4,
        labels=[LabelInfo("a"), LabelInfo("b")],
        patch=(size,) * 3,
    )  # type: ignore[arg-type]
    with torch.no_grad():
        out = build_network(spec).eval()(torch.rand(1, 1, size, size, size))
    assert tuple(out.shape) == (1, 3, size, size, size)


def test_bad_network_name_and_patch_size_say_what_to_use() -> None:
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        build_network(SegSpec(net="unett"))
    with pytest.raises(ConfigError, match="divisible by 16"):
        build_network(SegSpec(patch=(40, 40, 40)))


def test_checkpoint_round_trip_keeps_spec_weights_and_metrics(tmp_path: Path) -> None:
    spec = SegSpec(
        width=4, labels=[LabelInfo("liver")], patch=(32, 32, 32), spacing=(1.5, 1.5, 2.0), intensity="ct"
    )
    net = build_network(spec)
    path = save_checkpoint(tmp_path / "best.pt", spec, net, {"val_dice": 0.8})
    ckpt = load_checkpoint(tmp_path)  # a run folder resolves to its best.pt
    assert ckpt.path == path and ckpt.spec == spec and ckpt.metrics == {"val_dice": 0.8}
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.network()(x), net.eval()(x))


def test_builtin_brain_model_is_small_and_describes_itself() -> None:
    ckpt = load_checkpoint("brain-mask")
    assert ckpt.path is not None and ckpt.path.stat().st_size < 6 * 2**20
    assert [label.name for label in ckpt.spec.labels] == ["brain"]
    assert ckpt.spec.labels[0].type == ("12738006", "SCT", "Brain")
    assert ckpt.spec.spacing == (2.0, 2.0, 2.0) and ckpt.spec.largest_component


def test_missing_and_foreign_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="built-in: brain-mask"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable segmentation checkpoint"):
        load_checkpoint(junk)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a medvlab segmentation checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
