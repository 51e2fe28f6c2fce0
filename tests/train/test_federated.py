"""Federated LoRA over Flower: 3 simulated sites, FedAvg weighted by records, only adapter tensors travel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from safetensors.numpy import load_file

from medvlab.errors import ConfigError
from medvlab.train.federated import FederatedConfig, run_federated
from tests.helpers import write_jsonl


def site_records(train_dir: Path) -> list[list[dict[str, Any]]]:
    cxr = {
        "messages": [
            {"role": "user", "content": "<image>Is there a pneumothorax?"},
            {"role": "assistant", "content": "No pneumothorax."},
        ],
        "images": ["cxr.dcm"],
    }
    ct = {
        "messages": [
            {"role": "user", "content": "<image>Which organ is shown?"},
            {"role": "assistant", "content": "An axial CT slice."},
        ],
        "images": ["ct.dcm"],
    }
    return [[cxr] * 2, [ct] * 3, [cxr, ct] * 3]  # different data and different sizes: 2, 3, 6 records


def test_federated_config_checks() -> None:
    with pytest.raises(ConfigError, match="at least 2 sites"):
        FederatedConfig(model="tiny", sites=[Path("a.jsonl")])
    with pytest.raises(ConfigError, match="rounds must be at least 1"):
        FederatedConfig(model="tiny", sites=[Path("a.jsonl"), Path("b.jsonl")], rounds=0)


@pytest.mark.slow
def test_three_sites_average_their_adapters_and_send_no_images(
    train_dir: Path, tmp_path: Path, cache_dir: Path, tiny_dir: Path
) -> None:
    sites = []
    for k, records in enumerate(site_records(train_dir)):
        sites.append(write_jsonl(train_dir / f"site{k}.jsonl", records))
    out = tmp_path / "fed"
    cfg = FederatedConfig(
        model="tiny",
        sites=sites,
        rounds=1,
        output_dir=out,
        max_steps=2,
        batch_size=1,
        grad_accum=1,
        learning_rate=5e-3,
        logging_steps=1,
        warmup_ratio=0.0,
        lora_rank=4,
    )
    seen: list[tuple[str, Any]] = []
    adapter = run_federated(cfg, cache_dir, on_message=lambda kind, m: seen.append((kind, m)))

    # the averaged adapter is the record-weighted mean of the three site adapters of round 1
    final = load_file(adapter / "adapter_model.safetensors")
    local = [
        load_file(out / "sites" / f"site-{k}" / "round-1" / "adapter" / "adapter_model.safetensors")
        for k in range(3)
    ]
    counts = np.array([2.0, 3.0, 6.0])
    assert set(final) == set(local[0]) == set(local[1]) == set(local[2])
    lora_b = [k for k in final if "lora_B" in k]
    assert any(not np.allclose(local[0][k], local[1][k]) for k in lora_b)  # the sites really differ
    for key, value in final.items():
        mean = sum(c * site[key] for c, site in zip(counts, local, strict=True)) / counts.sum()
        np.testing.assert_allclose(value, mean, rtol=1e-5, atol=1e-7, err_msg=key)
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4
    assert (adapter / "processor_config.json").exists() or (adapter / "preprocessor_config.json").exists()

    # what travelled: 3 messages out, 3 back; LoRA float tensors and a few numbers, nothing else
    assert sorted(kind for kind, _ in seen) == ["from_site"] * 3 + ["to_site"] * 3
    n_lora = sum(v.size for v in final.values())
    pixels = [
        pydicom.dcmread(train_dir / name).PixelData[1000:1064] for name in ("cxr.dcm", "ct.dcm")
    ]  # a run of real pixel bytes from each image
    for _, message in seen:
        content = message.content
        assert {type(r).__name__ for r in content.values()} <= {"ArrayRecord", "ConfigRecord", "MetricRecord"}
        arrays = {name: a for record in content.array_records.values() for name, a in record.items()}
        assert set(arrays) == set(final)  # the adapter's tensor names, nothing more
        assert {a.dtype for a in arrays.values()} == {"float32"}
        assert sum(int(np.prod(a.shape)) for a in arrays.values()) == n_lora
        assert sum(len(a.data) for a in arrays.values()) < n_lora * 4 + 200 * len(arrays)  # no payload
        blob = b"".join(a.data for a in arrays.values())
        assert b"DICM" not in blob and not any(p in blob for p in pixels)
        values = [
            v
            for r in [*content.metric_records.values(), *content.config_records.values()]
            for v in r.values()
        ]
        assert all(isinstance(v, int | float) for v in values)  # no text, paths or bytes
    replies = [m for kind, m in seen if kind == "from_site"]
    assert sorted(int(m.content["metrics"]["num-examples"]) for m in replies) == [2, 3, 6]
    traffic = [json.loads(line) for line in (out / "traffic.jsonl").read_text().splitlines()]
    assert len(traffic) == 6 and all(t["values"] == n_lora for t in traffic)
