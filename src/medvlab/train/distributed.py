"""Training on many accelerators and machines: one recipe, launched by ``torchrun`` or ``accelerate launch``.

Nothing here starts processes. A launcher starts one process per accelerator and describes the job in the
environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...); the HF Trainer (through
accelerate) joins the process group, wraps the model and shards the data. What this module adds:

* the device of each process (accelerator ``LOCAL_RANK``) and the collective backend from the device
  layer (:attr:`medvlab.devices.DeviceInfo.distributed_backend`: nccl, hccl, cncl, xccl, gloo on CPU);
* ``--distributed ddp|fsdp|zero2|zero3``: plain data parallel (default), or parameters, gradients and
  optimizer state sharded by FSDP or DeepSpeed ZeRO-2/3, with the config files shipped in ``configs/``;
* only rank 0 logs at INFO and writes the resolved config, metrics, curves and the adapter's side files;
* a test mode (``MEDVLAB_TRAIN_TRACE=1``): every rank writes ``trace-rank<k>.json`` (the records it
  consumed, a checksum of each LoRA tensor at the end) so a test can prove the data was split and the
  weights stayed equal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from medvlab.devices import DeviceInfo, has_module
from medvlab.errors import ConfigError

if TYPE_CHECKING:
    from transformers import TrainerCallback

logger = logging.getLogger(__name__)

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")
CONFIG_DIR = Path(__file__).parent / "configs"
TRACE_ENV = "MEDVLAB_TRAIN_TRACE"


@dataclass(frozen=True)
class World:
    """This process's place in the job, as the launcher described it (a lone process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """Read ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` (set by torchrun, accelerate launch, deepspeed)."""
    try:
        return World(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )
    except ValueError as exc:
        raise ConfigError(
            f"The launcher's RANK / LOCAL_RANK / WORLD_SIZE are not integers ({exc}).",
            "Start the job with torchrun or accelerate launch, or unset those variables.",
        ) from exc


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the one process that writes files and logs."""
    return world().main


def device_for_rank(device: DeviceInfo) -> DeviceInfo:
    """The accelerator of this process: index ``LOCAL_RANK`` on each machine (CPU and MPS are shared)."""
    w = world()
    return device.for_local_rank(w.local_rank) if w.distributed else device


def quiet_other_ranks() -> None:
    """Ranks other than 0 log warnings and errors only, so a job prints each line once."""
    if is_main_process():
        return
    logging.getLogger("medvlab").setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def config_file(name: str) -> Path:
    """A shipped launcher config (``fsdp.yaml``, ``zero2.json``, ``zero3.json``, ``accelerate_*.yaml``)."""
    path = CONFIG_DIR / name
    if not path.exists():
        raise ConfigError(f"The shipped config '{name}' is missing from {CONFIG_DIR}.", "Reinstall medvlab.")
    return path


def trainer_arguments(strategy: str, device: DeviceInfo) -> dict[str, Any]:
    """TrainingArguments for ``strategy`` on ``device`` (empty for DDP in a single process)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown --distributed '{strategy}'.", f"Use one of {', '.join(STRATEGIES)}.")
    w = world()
    args: dict[str, Any] = {}
    if w.distributed:
        args["ddp_backend"] = device.distributed_backend
        # LoRA on every linear layer leaves none unused; saying so spares DDP a graph walk per step.
        args["ddp_find_unused_parameters"] = False
    elif strategy != "ddp":
        logger.warning(
            "--distributed %s in a single process: nothing to shard. Launch with torchrun or accelerate "
            "launch (docs/training.md).",
            strategy,
        )
    if strategy == "fsdp":
        args["fsdp"] = True  # full shard, auto-wrapped: the details are in fsdp.yaml
        args["fsdp_config"] = yaml.safe_load(config_file("fsdp.yaml").read_text(encoding="utf-8"))
    elif strategy in ("zero2", "zero3"):
        if not has_module("deepspeed"):
            raise ConfigError(
                f"--distributed {strategy} needs DeepSpeed, which is not installed.",
                "pip install deepspeed (CUDA machines), or use --distributed fsdp / ddp.",
            )
        args["deepspeed"] = str(config_file(f"{strategy}.json"))
    if w.distributed:
        logger.info(
            "rank %d of %d (local %d) on %s, backend %s, strategy %s",
            w.rank,
            w.world_size,
            w.local_rank,
            device.torch_device,
            args["ddp_backend"],
            strategy,
        )
    return args


def sharded(strategy: str) -> bool:
    """True when no single rank holds all the weights (every rank must take part in a forward pass)."""
    return strategy in ("fsdp", "zero3") and world().distributed


def _record_id(example: dict[str, Any]) -> str:
    """The dataset index when the recipe has one (SFT), else a digest of the example's text fields."""
    if "idx" in example:
        return str(int(example["idx"]))
    text = json.dumps({k: v for k, v in example.items() if k != "images"}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tensor_digest(tensor: Any) -> str:
    """sha256 of a tensor's bytes (contiguous, on the CPU): equal digests mean bitwise-equal weights."""
    import torch

    t = tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8)
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def trace_callbacks(folder: Path) -> list[TrainerCallback]:
    """Test mode (``MEDVLAB_TRAIN_TRACE=1``): a callback writing ``trace-rank<k>.json`` into ``folder``
    (the records this rank consumed, a digest of each LoRA tensor at the end); otherwise ``[]``."""
    if os.environ.get(TRACE_ENV, "") in ("", "0"):
        return []
    from transformers import TrainerCallback

    class RankTrace(TrainerCallback):
        def __init__(self) -> None:
            self.ids: list[str] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            loader = kw.get("train_dataloader")
            loader = getattr(loader, "base_dataloader", loader)  # accelerate's DataLoaderShard wraps one
            inner = getattr(loader, "collate_fn", None)
            if loader is None or inner is None:
                return

            def collate(examples: list[dict[str, Any]]) -> Any:
                self.ids.extend(_record_id(e) for e in examples)
                return inner(examples)

            loader.collate_fn = collate  # read when the epoch's iterator is made, after this event

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            from peft import get_peft_model_state_dict

            model = kw["model"]
            model = getattr(model, "module", model)  # DDP wrapper
            weights = get_peft_model_state_dict(model)
            w = world()
            out = {
                "rank": w.rank,
                "world_size": w.world_size,
                "records": self.ids,
                "steps": state.global_step,
                "digests": {k: tensor_digest(v) for k, v in weights.items()},
            }
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"trace-rank{w.rank}.json").write_text(json.dumps(out, indent=1), encoding="utf-8")

    return [RankTrace()]
