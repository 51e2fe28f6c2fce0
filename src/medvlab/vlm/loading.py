"""Finding and loading a model: hub id, local folder or ``tiny``; load errors classified into medvlab errors
that say what to do; PEFT adapters applied by name."""

from __future__ import annotations

import os
from pathlib import Path

from medvlab.config import TINY_MODEL
from medvlab.errors import GatedModelError, ModelLoadError, ModelNotFoundError


def resolve_model_source(model: str, cache_dir: Path | None = None) -> str:
    """``tiny`` -> the offline tiny model folder; a local folder stays; anything else is a hub id."""
    if model == TINY_MODEL:
        from medvlab.vlm.tiny import tiny_model_dir

        return str(tiny_model_dir(cache_dir))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"The folder '{model}' has no config.json, so it is not a Hugging Face model folder.",
                "Point --model at the folder that holds config.json (e.g. a snapshot from `hf download`).",
            )
        return str(path)
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
        raise ModelNotFoundError(f"The model folder '{model}' does not exist.", "Check the path.")
    _check_hub_reachable(model)
    return model


def _check_hub_reachable(model: str) -> None:
    """Fail in seconds, not minutes of download retries, when a hub model is neither cached nor reachable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(model, local_files_only=True)
        return  # cached: transformers will load it from the cache
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return  # transformers raises its own offline error, which _classify_load_error explains
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        raise ModelNotFoundError(
            f"The weights of '{model}' are not on this machine and {host} cannot be reached ({exc}).",
            f"Download it where there is internet (`hf download {model}`), copy the folder here and pass "
            "--model /path/to/folder; or run with --model tiny to try the offline test model.",
        ) from exc


def _classify_load_error(model: str, exc: BaseException) -> ModelLoadError:
    """Map the many exceptions of hub/transformers loading to medvlab errors that say what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(e) for e in chain).lower()
    get_it = (
        f"Download it where there is internet (`hf download {model}`) and copy the folder here, then pass "
        "--model /path/to/folder; or run `medvlab ask --model tiny` to try the offline test model."
    )
    if any(isinstance(e, GatedRepoError) for e in chain) or "gated" in text or "401" in text:
        return GatedModelError(
            f"Access to '{model}' is gated: no accepted licence or no token was found.",
            f"Accept the terms at https://huggingface.co/{model}, then `hf auth login` (or set HF_TOKEN). "
            + get_it,
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if any(isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)) for e in chain) or offline:
        return ModelNotFoundError(
            f"The weights of '{model}' are not on this machine"
            + (
                " and HF_HUB_OFFLINE is set, so they cannot be downloaded."
                if offline
                else " and cannot be downloaded."
            ),
            get_it,
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in chain) or "not a valid model identifier" in text:
        return ModelNotFoundError(
            f"'{model}' is neither a local folder nor a model on the Hugging Face hub.", get_it
        )
    if "unrecognized" in text or "imagetexttotext" in text.replace("-", "").replace("_", ""):
        return ModelLoadError(
            f"'{model}' is not an image-text-to-text model that transformers can load: {exc}",
            "Use a vision-language model (e.g. google/medgemma-4b-it) or upgrade transformers.",
        )
    if "connect" in text or "resolve" in text or "network" in text or "timed out" in text:
        return ModelNotFoundError(
            f"'{model}' could not be fetched: there is no connection to the hub.", get_it
        )
    return ModelLoadError(f"Loading '{model}' failed: {type(exc).__name__}: {exc}", get_it)


def _adapter_name(path: str) -> str:
    """A PEFT adapter name derived from the folder (PEFT names may not contain dots)."""
    import hashlib

    return "a" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]
