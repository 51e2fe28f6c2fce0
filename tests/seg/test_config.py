"""SegTrainConfig: every field documented, every bad value refused when the config is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from medvlab.cli.dataclass_options import field_docs
from medvlab.errors import ConfigError
from medvlab.seg.config import SegTrainConfig


def config(**kw: Any) -> SegTrainConfig:
    return SegTrainConfig(**{"images": ["a.nii.gz"], "labels": ["b.nii.gz"], **kw})


def test_every_field_has_a_docstring() -> None:
    docs = field_docs(SegTrainConfig)
    assert [f.name for f in dataclasses.fields(SegTrainConfig) if not docs.get(f.name)] == []


def test_defaults_and_normalisation() -> None:
    cfg = config(output_dir="runs/x", net="SegResNet", intensity="CT", patch=[32, 48, 64], spacing=[1, 2, 3])
    assert cfg.output_dir == Path("runs/x") and (cfg.net, cfg.intensity) == ("segresnet", "ct")
    assert cfg.patch == (32, 48, 64) == cfg.patch_size and cfg.spacing == (1.0, 2.0, 3.0)
    assert config().patch_size == (96, 96, 96) and config().output_dir == Path("runs/seg")


@pytest.mark.parametrize(
    ("kw", "problem", "fix"),
    [
        ({"net": "unett"}, "Unknown network 'unett'", "did you mean 'unet'"),
        ({"intensity": "mr"}, "Unknown intensity scaling", "percentile, ct"),
        ({"epochs": 0}, "epochs must be at least 1", "--epochs"),
        ({"batch_size": 0}, "batch_size must be at least 1", "--batch-size"),
        ({"num_samples": 0}, "num_samples must be at least 1", "--samples"),
        ({"width": 0}, "width must be at least 1", "--width"),
        ({"val_every": 0}, "val_every must be at least 1", "--val-every"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be at least 1", "--steps-per-epoch"),
        ({"workers": -1}, "workers must be 0 or more", "--workers"),
        ({"lr": 0.0}, "learning rate must be positive", "--lr"),
        ({"lr": float("nan")}, "learning rate must be positive", "--lr"),
        ({"weight_decay": -1.0}, "weight_decay must be 0 or more", "1e-5"),
        ({"patch": 0}, "patch 0 must be one or three positive", "--patch"),
        ({"patch": (32, 32)}, "must be one or three positive", "--patch"),
        ({"patch": (32, 32, 31.5)}, "whole numbers", "--patch"),
        ({"spacing": (1.0, 0.0, 1.0)}, "three positive voxel sizes", "--spacing"),
        ({"spacing": (1.0, 1.0)}, "three positive voxel sizes", "--spacing"),
        ({"label_names": ["liver", " "]}, "empty name", "--label-names"),
        ({"images": []}, "No training images", "--images"),
    ],
)
def test_bad_values_are_refused_with_a_fix(kw: dict[str, Any], problem: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(**kw)
    assert problem in err.value.problem and fix in (err.value.fix or "")
