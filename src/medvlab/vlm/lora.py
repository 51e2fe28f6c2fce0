"""LoRA adapters as engines serve them: names a request picks them by, and which adapters an engine
cannot apply as LoRA (vLLM and SGLang put LoRA on the language model only, so an adapter that also
trained the vision tower or the projector must be merged into the weights first)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from medvlab.errors import CapabilityError, EngineUnavailableError, ModelNotFoundError, RequestError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""An adapter's public name: what a request's ``model`` says (no slashes, no spaces)."""

VISION_PARTS = ("vision_tower", "vision_model", "multi_modal_projector", "visual.", "mm_projector")
"""Module-path pieces of the vision side of image-text-to-text models (Gemma 3, LLaVA, Qwen-VL)."""


def check_name(name: str) -> str:
    """``name`` if it can be a request's ``model``; RequestError (400) saying what is allowed otherwise."""
    if not NAME.match(name):
        raise RequestError(
            f"'{name}' cannot name an adapter.",
            "Use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit).",
        )
    return name


def check_folder(path: str | Path) -> Path:
    """The adapter folder, if it holds a PEFT adapter (``adapter_config.json``)."""
    folder = Path(path)
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"'{path}' holds no adapter_config.json.", "Point at a trained adapter folder (train sft/dpo -o)."
        )
    return folder


def vision_modules(path: str | Path) -> list[str]:
    """The adapter's LoRA-wrapped modules on the vision side (empty for a language-only adapter).

    Read from the saved tensor names (not only ``target_modules``, which may be a regex): PEFT saves
    ``base_model.model.<module path>.lora_A.weight`` for every wrapped module."""
    folder = check_folder(path)
    names: list[str] = []
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as f:
            names = list(f.keys())
    else:  # an adapter saved without safetensors: the config is all there is to read
        config = json.loads((folder / "adapter_config.json").read_text())
        targets = config.get("target_modules") or []
        names = [targets] if isinstance(targets, str) else [str(t) for t in targets]
    found = {
        n.split(".lora_")[0].removeprefix("base_model.model.")
        for n in names
        if any(part in n for part in VISION_PARTS)
    }
    return sorted(found)


class PeftAdapters:
    """Named LoRA adapters on one in-process model (PEFT): the default one (or the base model) and those
    a request picks by name. Callers hold the engine's model lock; methods return the (possibly newly
    PEFT-wrapped) model. One adapter is active per ``generate()``: PEFT's mixed-batch LoRA cannot mix
    adapters on the vision tower (its rows are images, not requests), so batches are formed per adapter."""

    def __init__(self) -> None:
        self.default: str | None = None
        """Folder of the adapter applied when a request names none (None: the base model)."""
        self.named: dict[str, str] = {}
        """Public name -> adapter folder."""

    @staticmethod
    def _attach(model: Any, path: str) -> tuple[Any, str]:
        from peft import PeftModel

        from medvlab.vlm.loading import _adapter_name

        peft_name = _adapter_name(path)
        if not isinstance(model, PeftModel):
            model = PeftModel.from_pretrained(model, path, adapter_name=peft_name)
        elif peft_name not in model.peft_config:
            model.load_adapter(path, adapter_name=peft_name)
        model.eval()
        return model, peft_name

    def _settle(self, model: Any) -> None:
        """Make the default adapter (or the base model) the active one."""
        from peft import PeftModel

        from medvlab.vlm.loading import _adapter_name

        if not isinstance(model, PeftModel):
            return
        lora: Any = model.base_model
        if self.default is None:
            lora.disable_adapter_layers()
        else:
            model.set_adapter(_adapter_name(self.default))
            lora.enable_adapter_layers()

    def set_default(self, model: Any, path: str | None) -> Any:
        if path is not None:
            model, _ = self._attach(model, path)
        self.default = path
        self._settle(model)
        return model

    def load(self, model: Any, name: str, path: str) -> Any:
        check_name(name)
        model, _ = self._attach(model, str(check_folder(path)))
        self.named[name] = path
        self._settle(model)
        return model

    def unload(self, model: Any, name: str) -> Any:
        """Forget ``name``; its weights go too unless the default or another name uses them."""
        from medvlab.vlm.loading import _adapter_name

        path = self.named.pop(name)
        if path != self.default and path not in self.named.values():
            model.delete_adapter(_adapter_name(path))
            remaining = list(model.peft_config)
            if remaining:  # PEFT may still point at the deleted one
                model.set_adapter(remaining[0])
            else:  # no adapter left: back to the plain model
                model = model.unload()
        self._settle(model)
        return model

    def path_of(self, name: str) -> str:
        if name not in self.named:
            raise ModelNotFoundError(
                f"No adapter named '{name}' is loaded.",
                f"Load it first (POST /v1/adapters with a name); loaded: {', '.join(self.named) or 'none'}.",
            )
        return self.named[name]

    @contextmanager
    def using(self, model: Any, name: str | None) -> Iterator[None]:
        """Run one ``generate()`` with adapter ``name`` active (None: the default), then settle back."""
        if name is None:
            yield
            return
        from medvlab.vlm.loading import _adapter_name

        model.set_adapter(_adapter_name(self.path_of(name)))
        model.base_model.enable_adapter_layers()
        try:
            yield
        finally:
            self._settle(model)


class EngineAdapters:
    """Named LoRA adapters on a remote engine, loaded and unloaded at run time through its own API:
    another medvlab (``/v1/adapters``), vLLM (``/v1/load_lora_adapter``; the engine runs with
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True --enable-lora``) or SGLang (``/load_lora_adapter``). The
    request then names the adapter in ``model``, which is how all three pick one."""

    def __init__(self, client: httpx.Client, url: str, flavor: str = "auto") -> None:
        self.client, self.url, self.flavor = client, url.rstrip("/"), flavor
        self.named: dict[str, str] = {}

    def _detect(self) -> str:
        if self.flavor == "auto":
            r = self._call("GET", "/adapters")
            ok = r.status_code == 200 and "model" in (r.json() if _is_json(r) else {})
            self.flavor = "medvlab" if ok else "vllm"
        return self.flavor

    def _call(self, method: str, route: str, root: bool = False, **kwargs: Any) -> httpx.Response:
        base = self.url.removesuffix("/v1") if root else self.url
        try:
            return self.client.request(method, base + route, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(
                f"The engine at {self.url} cannot be reached ({type(exc).__name__}).",
                f"Start the engine at {self.url}, then load the adapter again.",
            ) from exc

    def load(self, name: str, path: str) -> None:
        check_name(name)
        flavor = self._detect()
        if flavor == "medvlab":
            r = self._call("POST", "/adapters", json={"name": name, "path": path})
        else:
            if Path(path).exists() and vision_modules(path):
                raise CapabilityError(
                    f"The adapter '{path}' also trained the vision tower; {flavor} applies LoRA to the "
                    "language model only.",
                    "Merge it first (medvlab train merge ADAPTER -o MERGED) and serve MERGED as the "
                    "model, or use the in-process engine.",
                )
            body = {"lora_name": name, "lora_path": path}
            r = self._call("POST", "/load_lora_adapter", root=flavor == "sglang", json=body)
            if r.status_code in (404, 405) and self.flavor == "vllm":  # no vLLM route: try SGLang's
                r = self._call("POST", "/load_lora_adapter", root=True, json=body)
                if r.status_code == 200:
                    self.flavor = "sglang"
            if r.status_code in (404, 405):
                raise CapabilityError(
                    f"The engine at {self.url} has no run-time adapter API.",
                    "Start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora (SGLang: "
                    "--enable-lora), or name the adapters when the engine starts (--lora NAME=PATH).",
                )
        _raise_refused(r, self.url, f"load the adapter '{path}'")
        self.named[name] = path

    def unload(self, name: str) -> None:
        if name not in self.named:
            raise ModelNotFoundError(
                f"No adapter named '{name}' is loaded on the engine.",
                f"Loaded: {', '.join(self.named) or 'none'}.",
            )
        flavor = self._detect()
        if flavor == "medvlab":
            r = self._call("DELETE", "/adapters", params={"name": name})
        else:
            r = self._call("POST", "/unload_lora_adapter", root=flavor == "sglang", json={"lora_name": name})
        _raise_refused(r, self.url, f"unload the adapter '{name}'")
        del self.named[name]


def _is_json(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith("application/json")


def _raise_refused(r: httpx.Response, url: str, what: str) -> None:
    if r.status_code == 200:
        return
    try:
        body = r.json()
        message = str(body["error"]["message"] if "error" in body else body.get("detail") or body)
    except (ValueError, KeyError, TypeError, AttributeError):
        message = r.text[:300]
    problem = f"The engine at {url} could not {what} ({r.status_code}): {message}"
    if r.status_code == 404:
        raise ModelNotFoundError(problem, "Check the adapter folder exists on the engine's machine.")
    if r.status_code in (400, 403, 422):
        raise RequestError(problem, "Check the name and folder (see the engine's log).")
    raise EngineUnavailableError(problem, "See the engine's log, then retry.")
