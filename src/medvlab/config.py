"""Configuration: process-wide ``Settings`` (env ``MEDVLAB_*``) and frozen dataclasses per concern.

Precedence everywhere: defaults < environment (``MEDVLAB_*``) < explicit arguments/flags.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medvlab.errors import ConfigError

DEFAULT_MODEL = "google/medgemma-4b-it"
"""Hub id used when no model is named."""

TINY_MODEL = "tiny"
"""Alias for the offline tiny Gemma 3 model built by :mod:`medvlab.vlm.tiny` (tests and demos)."""

Language = Literal["en", "zh"]


def default_cache_dir() -> Path:
    """Where medvlab keeps things it builds itself (the tiny model). ``MEDVLAB_CACHE_DIR`` overrides."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medvlab"


class Settings(BaseSettings):
    """Settings of one medvlab process (server or CLI). Every field reads ``MEDVLAB_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MEDVLAB_", frozen=True, extra="ignore")

    model: str = DEFAULT_MODEL
    """Hugging Face hub id or local folder of an image-text-to-text model; ``tiny`` for the test model."""
    adapter: str | None = None
    """Optional PEFT adapter folder applied on top of ``model``."""
    loras: dict[str, str] = Field(default_factory=dict)
    """Named LoRA adapters served at once (``{"name": "folder"}``); a request picks one by ``model`` name."""
    seg_model: str = "brain-mask"
    """Segmentation checkpoint (``medvlab seg train`` best.pt) or built-in name used by the lab."""
    device: str | None = None
    """``cuda``, ``cuda:1``, ``npu``, ``mlu``, ``mps``, ``xpu`` or ``cpu``; ``None`` picks the best found."""
    dtype: str | None = None
    """``bfloat16``, ``float16`` or ``float32``; ``None`` picks per device."""
    host: str = "127.0.0.1"
    """Interface the server binds to."""
    port: int = Field(default=7860, ge=1, le=65535)
    """Port the server listens on."""
    max_new_tokens: int = Field(default=512, ge=1, le=32768)
    """Default cap on generated tokens per answer."""
    max_slices: int = Field(default=32, ge=1, le=512)
    """Default cap on slices of a CT/MR volume sent to the model."""
    allowed_paths: list[Path] = Field(default_factory=list)
    """Folders from which the API may read images by local path; empty refuses all local paths."""
    max_upload_mb: float = Field(default=512.0, gt=0)
    """Largest accepted upload or data URI, in MiB (request bodies may be 40 % larger: base64)."""
    max_slice_pixels: int = Field(default=8192 * 8192, ge=1)
    """Largest rows x columns of one slice a request may decode. The model sees 896 x 896 pictures; an
    8k x 8k radiograph is already 80 times more, so larger ones are refused with a fix, not decoded."""
    max_request_voxels: int = Field(default=512 * 2**20, ge=1)
    """Largest number of decoded voxels (slices x rows x columns) of one request's image: a 2,000-slice
    512 x 512 CT fits. With ``max_concurrency`` decoding at once, this bounds the memory of decoding."""
    ui_file_ttl_s: float = Field(default=900.0, gt=0)
    """How long files the web UI offers for download (masks, reports) stay on disk before they are
    deleted; uploads themselves are deleted as soon as they are read."""
    api_keys: list[str] = Field(default_factory=list)
    """Keys accepted as ``Authorization: Bearer <key>`` (or ``X-API-Key``); empty: no auth, loopback only."""
    max_concurrency: int = Field(default=2, ge=1, le=256)
    """Generations running at once; more requests wait in the queue."""
    max_queue: int = Field(default=8, ge=0, le=10000)
    """Requests allowed to wait for a slot; beyond that the server answers 429 with Retry-After."""
    request_timeout_s: float = Field(default=600.0, gt=0)
    """Longest a generation may run (and a request may wait for a slot) before it is stopped."""
    shutdown_grace_s: int = Field(default=10, ge=0)
    """On SIGTERM / Ctrl-C, how long answers still streaming may go on before they are stopped (the server
    stops accepting at once). Without a bound the server waited for the longest answer to end."""
    engine: Literal["transformers", "openai"] = "transformers"
    """Who runs the model: ``transformers`` in this process (every feature), or ``openai``: a remote
    OpenAI-compatible server (vLLM, SGLang, LMDeploy, another medvlab) at ``engine_url``."""
    engine_url: str | None = None
    """Base URL of the remote engine's API, e.g. ``http://127.0.0.1:8000/v1``."""
    engine_model: str | None = None
    """The model name the remote engine serves (default: ``model``)."""
    engine_key_env: str | None = None
    """Name of the environment variable holding the remote engine's API key (the key itself never
    appears in settings, flags or logs)."""
    engine_timeout_s: float = Field(default=120.0, gt=0)
    """Longest wait for the remote engine's next piece of an answer."""
    max_batch_size: int = Field(default=8, ge=1, le=256)
    """Concurrent greedy requests batched into one generate() call (1 turns batching off)."""
    allow_remote_urls: bool = False
    """Let requests name http(s) image URLs; the server then fetches them (size- and time-limited)."""
    cache_dir: Path = Field(default_factory=default_cache_dir)
    """Folder for artefacts medvlab builds (tiny model)."""
    data_dir: Path | None = None
    """Folder of the lab's records (feedback database and the images it refers to); None: <cache_dir>/data."""
    store_url: str | None = None
    """Database URL of the feedback store (e.g. postgresql+psycopg://...); None: SQLite in ``data_dir``."""
    kb_url: str | None = None
    """Database URL of the knowledge base; None means SQLite at ``<cache_dir>/kb.sqlite``."""
    pacs: dict[str, dict[str, Any] | str] = Field(default_factory=dict)
    """DICOMweb endpoints by name: ``{"name": {"url": "http://host/dicom-web", "token_env": "VAR"}}``
    (also ``user_env`` / ``password_env`` for basic auth, ``timeout_s``; or just the URL as a string);
    secrets stay in those variables."""
    pacs_config: Path | None = None
    """A JSON file holding the same mapping as ``pacs`` (its endpoints are added to those of ``pacs``)."""

    @model_validator(mode="after")
    def _engine_has_url(self) -> Settings:
        if self.engine == "openai" and not self.engine_url:
            raise ValueError(
                "--engine openai needs the engine's address. "
                "Fix: pass --engine-url http://HOST:PORT/v1 (MEDVLAB_ENGINE_URL)."
            )
        return self

    @field_validator("api_keys")
    @classmethod
    def _keys_not_empty(cls, keys: list[str]) -> list[str]:
        bad = [i for i, k in enumerate(keys) if not k.strip()]
        if bad:
            raise ValueError(
                "MEDVLAB_API_KEYS holds an empty key, which would let requests without a key in. "
                "Fix: remove it, or set real keys, e.g. MEDVLAB_API_KEYS='[\"<random key>\"]' "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)."
            )
        if any(k != k.strip() for k in keys):
            raise ValueError(
                "An API key in MEDVLAB_API_KEYS starts or ends with spaces. Fix: remove the spaces."
            )
        return keys


def settings_with(**overrides: Any) -> Settings:
    """Settings from the environment, with the overrides that are not None (e.g. CLI flags) on top."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:  # one line naming each bad setting and its fix, not a traceback
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'settings'}: "
            f"{str(err.get('msg', '')).removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        problem, _, fix = problems.partition(" Fix: ")
        raise ConfigError(
            f"Invalid settings: {problem}", fix or "Correct the MEDVLAB_* variable or flag."
        ) from exc


@dataclass(frozen=True)
class LoadLimits:
    """Caps checked *before* pixel data is decoded, so hostile headers cannot exhaust memory."""

    max_pixels_per_slice: int = 16384 * 16384
    """Largest rows*columns of one slice/frame (a 16k x 16k radiograph fits)."""
    max_slices: int = 4096
    """Most slices/frames in one image or series."""
    max_voxels: int = 1024 * 1024 * 1024
    """Largest slices*rows*columns of one volume (1 Gi voxels = 4 GiB as float32)."""
    max_file_mb: float = 4096.0
    """Largest single file read, in MiB."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ConfigError(
                    f"LoadLimits.{name} must be positive, got {value}.", "Use a positive number."
                )


@dataclass(frozen=True)
class GenerationOptions:
    """How the model decodes an answer."""

    max_new_tokens: int = 512
    """Most tokens generated for one answer."""
    min_new_tokens: int = 0
    """Suppress end-of-sequence until this many tokens exist (vLLM's ``min_tokens``)."""
    do_sample: bool = False
    """Greedy decoding when False (reproducible); sampling with ``temperature``/``top_p`` when True."""
    temperature: float = 0.7
    """Sampling temperature (only with ``do_sample``)."""
    top_p: float = 0.95
    """Nucleus sampling mass (only with ``do_sample``)."""
    seed: int | None = None
    """Seed for sampling; None leaves the generator as it is."""
    json_schema: dict[str, Any] | None = None
    """When set, decoding is constrained so the answer is JSON valid against this schema."""
    adapter: str | None = None
    """Name of a loaded LoRA adapter this answer uses (``Settings.loras`` / ``/v1/adapters``); None: the
    active one."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.", "Pass 1 or more.")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.", "Use e.g. 0.7.")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}.", "Use e.g. 0.95.")


@dataclass(frozen=True)
class PromptOptions:
    """How images and a question become chat messages."""

    language: Language | None = None
    """Answer language; None detects it from the question (any CJK character means Chinese)."""
    max_slices: int = 32
    """Most slices of a volume sent to the model, sampled evenly and kept in order."""
    window: str | None = None
    """Window preset name, ``C,W`` (centre,width), ``auto`` or ``medgemma``; None picks per modality."""
    system_prompt: str | None = None
    """Overrides the built-in system prompt of the chosen language."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form context for future prompt parts (e.g. measured volumes)."""

    def __post_init__(self) -> None:
        if self.max_slices < 1:
            raise ConfigError(f"max_slices must be >= 1, got {self.max_slices}.", "Pass 1 or more.")
        if self.language not in (None, "en", "zh"):
            raise ConfigError(f"Unknown language '{self.language}'.", "Use 'en' or 'zh'.")
