"""Configuration of ``train grpo`` and ``train sample``: dataclasses with attribute docs (flags generated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medvlab.devices import has_module
from medvlab.errors import ConfigError, DeviceError
from medvlab.train.config import TrainConfig


@dataclass
class GrpoTrainConfig(TrainConfig):
    """Group relative policy optimisation on (image, question[, reference]) records, scored by rewards."""

    rewards: list[str] = field(default_factory=list)
    """Reward NAME[=WEIGHT], repeatable (correctness, schema, terminology, negatives, overreach, length)."""
    reward_plugins: list[str] = field(default_factory=list)
    """Python file(s) registering more rewards with @reward("name"), repeatable."""
    num_generations: int = 4
    """Answers sampled per prompt (the group whose rewards are compared)."""
    beta: float = 0.04
    """KL penalty towards the base model (0: none, and no reference pass)."""
    max_completion_length: int = 128
    """Most new tokens per sampled answer."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling mass of the rollouts."""
    loss_type: str = "dapo"
    """TRL GRPO loss: grpo, dapo, dr_grpo, bnpo, ..."""
    use_vllm: bool = False
    """Generate rollouts with vLLM in this process (colocate mode; needs vllm and a CUDA GPU)."""
    vllm_gpu_memory_utilization: float = 0.3
    """Share of GPU memory vLLM may take when ``use_vllm``."""
    log_completions: bool = False
    """Print a sample of prompts, answers and rewards at each logging step."""
    learning_rate: float = 1e-5
    """Peak learning rate (GRPO wants a small one)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reward_plugins = [str(p) for p in self.reward_plugins]  # text in the resolved YAML
        if self.num_generations < 2:
            raise ConfigError(
                f"num_generations must be at least 2, got {self.num_generations}.",
                "GRPO compares answers within a group: use e.g. --num-generations 4.",
            )
        generation_batch = self.batch_size * self.grad_accum
        if generation_batch % self.num_generations:
            raise ConfigError(
                f"batch_size x grad_accum ({generation_batch}) is not a multiple of num_generations "
                f"({self.num_generations}).",
                f"Set --grad-accum so batch_size x grad_accum is e.g. {self.num_generations * 2}.",
            )
        if self.beta < 0:
            raise ConfigError(
                f"beta must be >= 0, got {self.beta}.", "Use e.g. 0.04 (0 turns the KL term off)."
            )
        if self.max_completion_length < 1:
            raise ConfigError("max_completion_length must be at least 1.", "Use e.g. 128.")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature must be > 0 and top_p in (0, 1].", "Use e.g. 1.0 and 1.0.")


@dataclass
class SampleConfig:
    """Sample answers per prompt, score them with rewards, write chosen/rejected pairs for ``train dpo``."""

    model: str = "google/medgemma-4b-it"
    """Base model: hub id, local folder, or ``tiny`` (the offline test model)."""
    adapter: Path | None = None
    """LoRA adapter to sample from (e.g. from train sft)."""
    data: Path = Path("prompts.jsonl")
    """Prompt records (JSONL, as for train grpo: reference answers optional)."""
    output: Path = Path("pairs.jsonl")
    """Where the preference pairs go (DPO records)."""
    n: int = 4
    """Answers sampled per prompt."""
    rewards: list[str] = field(default_factory=list)
    """Reward NAME[=WEIGHT], repeatable."""
    reward_plugins: list[Path] = field(default_factory=list)
    """Python file(s) registering more rewards with @reward("name"), repeatable."""
    feedback: Path | None = None
    """Clinician preference pairs (``medvlab feedback export --format dpo``) to add to the output."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    max_new_tokens: int = 128
    """Most new tokens per answer."""
    seed: int = 42
    """Answer k of prompt i is sampled with seed + i * n + k (reproducible)."""
    device: str | None = None
    """Device override (cuda, npu, mps, cpu, ...)."""
    dtype: str | None = None
    """bfloat16 / float16 / float32; default per device."""
    window: str | None = None
    """Window for DICOM/NIfTI images (as at inference; None: per modality)."""
    max_slices: int = 8
    """Most slices of a volume per record, sampled as at inference."""
    scores: bool = True
    """Write every scored answer to ``<output>.scores.jsonl`` as well."""

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        self.adapter = Path(self.adapter) if self.adapter else None
        self.feedback = Path(self.feedback) if self.feedback else None
        self.reward_plugins = [Path(p) for p in self.reward_plugins]
        if self.n < 2:
            raise ConfigError(
                f"n must be at least 2, got {self.n}.", "A pair needs two answers: use e.g. --n 4."
            )
        if self.max_new_tokens < 1 or self.max_slices < 1:
            raise ConfigError("max_new_tokens and max_slices must be at least 1.", "Use e.g. 128 and 8.")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("temperature must be > 0 and top_p in (0, 1].", "Use e.g. 1.0 and 0.95.")


def check_vllm(device_kind: str) -> None:
    """``use_vllm`` needs the vllm package and a CUDA GPU; raise with the fix otherwise."""
    if not has_module("vllm"):
        raise ConfigError(
            "--use-vllm needs the vllm package.", "pip install vllm, or train without --use-vllm."
        )
    if device_kind != "cuda":
        raise DeviceError(
            f"vLLM rollouts need a CUDA GPU; this run is on {device_kind}.",
            "Run on a CUDA GPU, or train without --use-vllm (rollouts with transformers' generate).",
        )
