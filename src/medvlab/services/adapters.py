"""LoRA adapters on the served model: swapped at run time, only from the configured or allowed folders."""

from __future__ import annotations

from pathlib import Path

from medvlab.config import Settings
from medvlab.errors import InputRefusedError
from medvlab.vlm.engine import Backend


def set_adapter(backend: Backend, settings: Settings, path: str | None) -> str | None:
    """Apply the adapter at ``path`` (or the base model for None) without a restart; returns what is
    active. Only the adapter the lab started with, or one under ``MEDVLAB_ALLOWED_PATHS``, may be loaded."""
    if path is not None:
        target = Path(path).expanduser().resolve()
        allowed = [Path(r).expanduser().resolve() for r in settings.allowed_paths]
        configured = Path(settings.adapter).resolve() if settings.adapter else None
        if target != configured and not any(target.is_relative_to(r) for r in allowed):
            raise InputRefusedError(
                f"Loading an adapter from '{path}' is not allowed.",
                "Put adapters under a folder named in MEDVLAB_ALLOWED_PATHS.",
            )
        path = str(target)
    backend.set_adapter(path)
    return path
