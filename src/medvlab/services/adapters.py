"""LoRA adapters on the served model: the active one swapped at run time, several served at once by name
(chosen per request by ``model``), only from the configured or allowed folders; adapters prepared for
engines that put LoRA on the language model only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from medvlab.config import Settings
from medvlab.errors import ConfigError, InputRefusedError, NotFoundError
from medvlab.vlm.engine import Backend
from medvlab.vlm.lora import check_folder, check_name, vision_modules

logger = logging.getLogger(__name__)


def allowed_adapter(settings: Settings, path: str) -> str:
    """``path`` resolved, if it is a configured adapter or lies under ``MEDVLAB_ALLOWED_PATHS`` or the lab's
    own training runs (``<data_dir>/runs``)."""
    from medvlab.services.training import runs_folder

    target = Path(path).expanduser().resolve()
    allowed = [Path(r).expanduser().resolve() for r in settings.allowed_paths]
    allowed.append(runs_folder(settings).resolve())  # the lab's own training jobs (Train tab)
    configured = {Path(p).resolve() for p in [settings.adapter, *settings.loras.values()] if p}
    if target not in configured and not any(target.is_relative_to(r) for r in allowed):
        raise InputRefusedError(
            f"Loading an adapter from '{path}' is not allowed.",
            "Put adapters under a folder named in MEDVLAB_ALLOWED_PATHS.",
        )
    return str(target)


def set_adapter(backend: Backend, settings: Settings, path: str | None) -> str | None:
    """Apply the adapter at ``path`` (or the base model for None) without a restart; returns what is
    active. Only the adapter the lab started with, or one under ``MEDVLAB_ALLOWED_PATHS``, may be loaded."""
    if path is not None:
        path = allowed_adapter(settings, path)
    backend.set_adapter(path)
    return path


def load_adapter(backend: Backend, settings: Settings, name: str, path: str) -> dict[str, str]:
    """Serve the adapter at ``path`` under ``name`` beside the others; returns all served by name."""
    check_name(name)
    if name in backend.adapters:
        raise ConfigError(
            f"An adapter named '{name}' is already loaded ({backend.adapters[name]}).",
            "Unload it first (DELETE /v1/adapters?name=...) or pick another name.",
        )
    backend.load_adapter(name, allowed_adapter(settings, path))
    return backend.adapters


def unload_adapter(backend: Backend, name: str) -> dict[str, str]:
    if name not in backend.adapters:
        raise NotFoundError(
            f"No adapter named '{name}' is loaded.",
            f"Loaded: {', '.join(backend.adapters) or 'none'} (GET /v1/adapters).",
        )
    backend.unload_adapter(name)
    return backend.adapters


def pick(adapters: dict[str, str], served_names: set[str], requested: str) -> str | None:
    """The adapter a request's ``model`` names (None: the served model itself)."""
    if requested in served_names:
        return None
    if requested in adapters:
        return requested
    names = sorted(served_names) + sorted(adapters)
    raise NotFoundError(
        f"The model '{requested}' is not served here.",
        f"Use one of: {', '.join(names)} (see GET /v1/models).",
    )


@dataclass
class EnginePlan:
    """What a managed vLLM/SGLang engine is started with: the model folder and the named adapters."""

    model: str
    adapters: dict[str, str] = field(default_factory=dict)
    merged: str | None = None
    """The adapter merged into ``model`` because it trained the vision tower (None: none was)."""


def for_engine(settings: Settings, names: dict[str, str]) -> EnginePlan:
    """Prepare ``names`` (name -> adapter folder) for an engine that applies LoRA to the language model only.

    An adapter that also trained the vision tower or projector cannot be served as LoRA there: when it is
    the lab's default adapter (``--adapter``) it is merged into the base model, which the engine then
    serves (said in the log); any other such adapter is refused with the fix."""
    plan = EnginePlan(settings.model)
    default = str(Path(settings.adapter).resolve()) if settings.adapter else None
    for name, path in names.items():
        vision = vision_modules(check_folder(path))
        if not vision:
            plan.adapters[name] = path
            continue
        if path != default or plan.merged is not None:
            raise ConfigError(
                f"The adapter '{name}' ({path}) also trained the vision tower ({vision[0]}, ...), and the "
                "engine applies LoRA to the language model only.",
                f"Merge it (medvlab train merge {path} -o MERGED) and serve MERGED, or make it --adapter.",
            )
        from medvlab.train.merge import merge_adapter

        target = settings.cache_dir / "merged" / name
        if not (target / "config.json").exists():
            merge_adapter(Path(path), target, base=settings.model, cache_dir=settings.cache_dir)
        logger.warning(
            "adapter '%s' trained the vision tower (%d modules), which the engine cannot apply as LoRA; "
            "merged it into %s, which the engine serves",
            name,
            len(vision),
            target,
        )
        plan.model, plan.merged = str(target), name
    return plan
