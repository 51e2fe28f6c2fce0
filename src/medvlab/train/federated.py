"""Federated fine-tuning for hospitals that cannot share images: Flower (``flwr``) FedAvg of LoRA adapters.

Each site trains the LoRA adapter on its own records with the SFT recipe (:func:`medvlab.train.sft.run_sft`,
same data format, windowing and loss), starting from the global adapter of the round; the server averages
the sites' adapters weighted by their record counts (Flower's ``FedAvg``). Only the LoRA tensors travel,
as float arrays, plus the record count and the training loss: images, texts and paths never leave a site.
Every message is summarised in ``traffic.jsonl`` (kind, round, node, array names, dtypes, shapes, sizes)
so a hospital can audit what crossed the wire. The final adapter has ``train sft``'s format: use it with
``medvlab ask/serve/eval --adapter <output_dir>/adapter``.

``run_federated`` runs a Flower *simulation* (the Ray backend, one virtual SuperNode per site JSONL, on
this machine). In a real deployment the same :func:`client_app` / :func:`server_app` run under
``flower-superlink`` / ``flower-supernode`` with each site's JSONL named by its node config (``data=...``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvlab.errors import ConfigError, DataError
from medvlab.train.config import SFTTrainConfig, write_resolved

if TYPE_CHECKING:
    from flwr.app import Message
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

logger = logging.getLogger(__name__)

WEIGHT_KEY = "num-examples"
"""The reply metric FedAvg weights each site's adapter by (Flower's default name)."""


@dataclass
class FederatedConfig(SFTTrainConfig):
    """Federated LoRA fine-tuning: one JSONL per site, FedAvg of the adapters for ``rounds`` rounds."""

    sites: list[Path] = field(default_factory=list)
    """One SFT JSONL per site (repeat --site); each stays with its own (simulated) node."""
    rounds: int = 3
    """Federated rounds: local training at every site, then averaging."""
    max_steps: int = 10
    """Local optimizer steps per site and round (-1: ``epochs`` over the site's records)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sites = [Path(p) for p in self.sites]
        if len(self.sites) < 2:
            raise ConfigError(
                f"Federated training needs at least 2 sites, got {len(self.sites)}.",
                "Pass --site a.jsonl --site b.jsonl (one JSONL per hospital).",
            )
        if self.rounds < 1:
            raise ConfigError(f"rounds must be at least 1, got {self.rounds}.", "Use e.g. --rounds 3.")
        if self.qlora:
            raise ConfigError("QLoRA is not supported in federated training yet.", "Train without --qlora.")


def describe(kind: str, message: Message) -> dict[str, Any]:
    """What one message carries: record kinds, array names / dtypes / shapes / sizes, metrics, config."""
    content = message.content
    tensors = [(name, a) for record in content.array_records.values() for name, a in record.items()]
    arrays = {name: {"dtype": a.dtype, "shape": list(a.shape), "bytes": len(a.data)} for name, a in tensors}
    return {
        "kind": kind,
        "node": int(message.metadata.dst_node_id if kind == "to_site" else message.metadata.src_node_id),
        "records": sorted(type(r).__name__ for r in content.values()),
        "arrays": arrays,
        "values": sum(_numel(list(a.shape)) for _, a in tensors),
        "metrics": {k: v for r in content.metric_records.values() for k, v in r.items()},
        "config": {k: v for r in content.config_records.values() for k, v in r.items()},
    }


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _site_records(path: Path) -> int:
    from medvlab.train.data import read_jsonl

    return len(read_jsonl(path))


def client_app(cfg: FederatedConfig, cache_dir: Path | None = None) -> ClientApp:
    """A site: train the received global adapter on the site's records, send back only the LoRA tensors."""
    import torch
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from medvlab.train.metrics import read_metrics
    from medvlab.train.sft import run_sft

    app = ClientApp()

    class StartFromGlobal(TrainerCallback):
        """Load the round's global adapter into the freshly made LoRA before the first step."""

        def __init__(self, weights: dict[str, torch.Tensor]) -> None:
            self.weights = weights

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(kw["model"], self.weights)
            unexpected = list(getattr(result, "unexpected_keys", []))
            if unexpected:
                raise ConfigError(
                    f"The global adapter has tensors this model lacks: {unexpected[:3]}.",
                    "Every site must train the same --model with the same LoRA options.",
                )

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        site = int(context.node_config.get("partition-id", 0))
        data = Path(str(context.node_config["data"])) if "data" in context.node_config else cfg.sites[site]
        server_round = int(str(msg.content.config_records["config"]["server-round"]))
        weights = msg.content.array_records["arrays"].to_torch_state_dict()
        out = cfg.output_dir / "sites" / f"site-{site}" / f"round-{server_round}"
        site_cfg = replace(cfg, data=data, output_dir=out, resume=False, sites=cfg.sites)
        adapter = run_sft(site_cfg, cache_dir, callbacks=[StartFromGlobal(weights)])
        trained = load_file(adapter / "adapter_model.safetensors")
        losses = [r["loss"] for r in read_metrics(out) if "loss" in r]
        metrics = MetricRecord(
            {WEIGHT_KEY: _site_records(data), "train_loss": float(losses[-1] if losses else 0)}
        )
        return Message(RecordDict({"arrays": ArrayRecord(trained), "metrics": metrics}), reply_to=msg)

    return app


def server_app(
    cfg: FederatedConfig,
    initial: dict[str, Any],
    done: Callable[[Any], None],
    on_message: Callable[[str, Message], None] | None = None,
    failures: list[str] | None = None,
) -> ServerApp:
    """The server: FedAvg (weighted by record count) of the sites' adapters for ``cfg.rounds`` rounds."""
    from flwr.app import ArrayRecord, ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    n = len(cfg.sites)
    failed_sites: list[str] = failures if failures is not None else []

    class AuditedFedAvg(FedAvg):
        """FedAvg that shows every message leaving for and arriving from a site to ``on_message``."""

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Grid) -> Any:
            messages = list(super().configure_train(server_round, arrays, config, grid))
            for m in messages:
                if on_message:
                    on_message("to_site", m)
            return messages

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            for m in replies:
                if on_message:
                    on_message("from_site", m)
            failed = [m for m in replies if m.has_error()]
            if failed:  # FedAvg would average the others and carry on: a site's data would silently drop out
                for m in failed:
                    reason = (m.error.reason or "").strip().splitlines() or ["unknown error"]
                    failed_sites.append(f"site node {m.metadata.src_node_id}: {reason[-1]}")
                raise RuntimeError(f"round {server_round}: {len(failed)} site(s) failed")
            return super().aggregate_train(server_round, replies)

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = AuditedFedAvg(
            fraction_evaluate=0.0,
            min_train_nodes=n,
            min_available_nodes=n,
            weighted_by_key=WEIGHT_KEY,
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(initial),
            num_rounds=cfg.rounds,
            train_config=ConfigRecord({"local-steps": cfg.max_steps}),
        )
        done(result)

    return app


def initial_adapter(cfg: FederatedConfig, cache_dir: Path | None = None) -> tuple[Any, Any]:
    """(PEFT model, processor) with a fresh LoRA: every site starts round 1 from the same weights."""
    import torch
    from peft import get_peft_model

    from medvlab.train.modeling import load_for_training, lora_config

    torch.manual_seed(cfg.seed)
    model, processor, _ = load_for_training(cfg, cache_dir)
    return get_peft_model(model, lora_config(cfg)), processor


def check_sites(cfg: FederatedConfig) -> list[int]:
    """Validate every site's records as ``train sft`` does; returns their record counts."""
    from medvlab.config import PromptOptions
    from medvlab.train.data import ImageCache, load_sft

    for path in cfg.sites:
        if not path.is_file():
            raise DataError(f"The site file '{path}' does not exist.", "Check the --site paths.")
    cache = ImageCache(PromptOptions(window=cfg.window, max_slices=cfg.max_slices), enabled=False)
    return [len(load_sft(path, cache)) for path in cfg.sites]


def run_federated(
    cfg: FederatedConfig,
    cache_dir: Path | None = None,
    on_message: Callable[[str, Message], None] | None = None,
) -> Path:
    """Simulate the federation on this machine (one Flower SuperNode per site); returns the adapter folder."""
    from flwr.simulation import run_simulation
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from medvlab.devices import resolve_device
    from medvlab.train.metrics import MetricsWriter, write_csv_and_plot

    counts = check_sites(cfg)  # a bad record fails here, in seconds, not in a site halfway through round 1
    out = cfg.output_dir
    write_resolved(cfg, out)
    model, processor = initial_adapter(cfg, cache_dir)
    initial = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    logger.info(
        "%d sites (%s records), %d LoRA tensors, %d rounds",
        len(counts),
        "/".join(map(str, counts)),
        len(initial),
        cfg.rounds,
    )

    traffic = out / "traffic.jsonl"
    traffic.unlink(missing_ok=True)

    def audit(kind: str, message: Message) -> None:
        with traffic.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(describe(kind, message)) + "\n")
        if on_message:
            on_message(kind, message)

    results: list[Any] = []
    failures: list[str] = []
    gpu = resolve_device(cfg.device).kind == "cuda"
    if not logger.isEnabledFor(logging.DEBUG):  # Flower logs every step of every round at DEBUG/INFO
        logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(
        server_app=server_app(cfg, initial, results.append, audit, failures),
        client_app=client_app(cfg, cache_dir),
        num_supernodes=len(cfg.sites),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 1.0 if gpu else 0.0},
            "init_args": {"logging_level": logging.ERROR, "log_to_driver": False},
        },
    )
    if failures:
        raise ConfigError(
            f"Federated training failed at {'; '.join(failures)}", "Fix that site's data or setup."
        )
    if not results or results[0].arrays is None:
        raise ConfigError(
            "The federated run ended without an averaged adapter (a site failed).",
            f"See the site logs under {out / 'sites'} and run again with -v.",
        )
    result = results[0]

    # the averaged adapter, saved like train sft's (adapter_config.json + weights + processor)
    averaged = result.arrays.to_torch_state_dict()
    set_peft_model_state_dict(model, averaged)
    adapter_dir = out / "adapter"
    model.save_pretrained(str(adapter_dir))
    processor.save_pretrained(str(adapter_dir))
    write_resolved(cfg, adapter_dir)

    # one metrics row per round (record-weighted mean of the sites' last training loss), curves PNG
    writer = MetricsWriter(out)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    for server_round, metrics in sorted(result.train_metrics_clientapp.items()):
        state = _RoundState(server_round)
        writer.on_log(None, state, None, logs={"loss": float(metrics.get("train_loss", 0.0))})
    write_csv_and_plot(out)
    return adapter_dir


@dataclass
class _RoundState:
    """The bits of a TrainerState that MetricsWriter reads, for one federated round."""

    global_step: int
    epoch: float = 0.0
    is_world_process_zero: bool = True
