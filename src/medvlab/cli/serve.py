"""``medvlab serve``: the lab server (REST + OpenAI-compatible API + web UI) on one port, optionally in front
of a remote engine (``--engine openai``) or a managed one it starts itself (``--engine vllm|sglang``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from medvlab.cli import options

if TYPE_CHECKING:
    from medvlab.config import Settings
    from medvlab.vlm.launch import ManagedEngine


def serve(
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    dtype: str | None = options.DTYPE,
    adapter: str | None = options.ADAPTER,
    lora: list[str] = typer.Option(
        [],
        "--lora",
        help="NAME=FOLDER: a LoRA adapter served beside the others; a request picks it with model=NAME. "
        "Repeat for several.",
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="transformers (in this process, the default), openai (a running OpenAI-compatible server), "
        "or vllm / sglang (started and stopped by the lab).",
    ),
    engine_url: str | None = options.ENGINE_URL,
    engine_model: str | None = options.ENGINE_MODEL,
    engine_key_env: str | None = options.ENGINE_KEY_ENV,
    tensor_parallel: int = typer.Option(
        1, "--tensor-parallel-size", help="GPUs a managed engine splits layers over."
    ),
    pipeline_parallel: int = typer.Option(
        1, "--pipeline-parallel-size", help="Pipeline stages of a managed engine."
    ),
    ray: bool = typer.Option(
        False, "--ray", help="vLLM across several machines (distributed executor: Ray)."
    ),
    memory_fraction: float | None = typer.Option(
        None, "--gpu-memory-fraction", help="Share of GPU memory a managed engine may take."
    ),
    max_model_len: int | None = typer.Option(
        None, "--max-model-len", help="Context length of a managed engine."
    ),
    engine_arg: list[str] = typer.Option(
        [], "--engine-arg", help="Extra flag passed to the managed engine as is."
    ),
    host: str | None = typer.Option(None, "--host", help="Interface to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Port (default 7860)."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Serve the API only, without the web UI."),
) -> None:
    """Start the lab server: web UI at /, OpenAI-compatible API at /v1, health at /healthz."""
    import logging

    import uvicorn

    from medvlab.config import settings_with
    from medvlab.errors import look_up_option
    from medvlab.server.app import create_app
    from medvlab.server.security import bind_host
    from medvlab.services import Lab

    if engine is not None:
        engine = look_up_option(engine, ["transformers", "openai", "vllm", "sglang"], "engine")
    managed_kind = engine if engine in ("vllm", "sglang") else None
    settings = settings_with(
        model=model,
        device=device,
        dtype=dtype,
        adapter=adapter,
        host=host,
        port=port,
        engine=None if managed_kind else engine,
        engine_url=engine_url,
        engine_model=engine_model,
        engine_key_env=engine_key_env,
        loras=parse_loras(lora) or None,
    )
    logging.getLogger("medvlab").setLevel(logging.INFO)
    bind, why = bind_host(settings.host, settings.api_keys)
    if why:
        typer.echo(why, err=True)
    managed: ManagedEngine | None = None
    if managed_kind:
        managed, settings = start_engine(
            managed_kind,
            settings,
            tensor_parallel,
            pipeline_parallel,
            ray,
            memory_fraction,
            max_model_len,
            engine_arg,
        )
    app = create_app(
        Lab(settings), ui=not no_ui, own_scratch=True, on_shutdown=managed.stop if managed else None
    )
    auth = "API keys required" if settings.api_keys else "no API key: loopback only"
    typer.echo(f"medvlab serving {settings.model} at http://{bind}:{settings.port}/ ({auth})", err=True)
    try:
        uvicorn.run(
            app,
            host=bind,
            port=settings.port,
            log_level="info",
            timeout_graceful_shutdown=settings.shutdown_grace_s,  # then open answers are cancelled
        )
    finally:  # Ctrl-C; a SIGTERM stops the engine through the app's shutdown
        if managed is not None:
            managed.stop()


def parse_loras(items: list[str]) -> dict[str, str]:
    """``NAME=FOLDER`` items -> {name: resolved folder}, each checked (one line and exit 2 otherwise)."""
    from pathlib import Path

    from medvlab.vlm.lora import check_folder, check_name

    loras: dict[str, str] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise typer.BadParameter(f"'{item}' is not NAME=FOLDER.", param_hint="--lora")
        check_name(name)  # before the folder: the name is the first thing a user may have mistyped
        loras[name] = str(check_folder(Path(folder).expanduser()).resolve())
    return loras


def start_engine(
    kind: str,
    settings: Settings,
    tensor_parallel: int,
    pipeline_parallel: int,
    ray: bool,
    memory_fraction: float | None,
    max_model_len: int | None,
    extra: list[str],
) -> tuple[ManagedEngine, Settings]:
    """Start vLLM/SGLang for ``settings.model`` with progress; the settings that point the lab at it."""
    import socket

    from rich.console import Console

    from medvlab import scratch
    from medvlab.devices import resolve_device
    from medvlab.services.adapters import for_engine
    from medvlab.vlm.launch import EngineSpec, ManagedEngine, adapter_names, check_installed

    device = resolve_device(settings.device)
    check_installed(kind, device.kind)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        engine_port = int(s.getsockname()[1])
    default = adapter_names([settings.adapter] if settings.adapter else [])
    plan = for_engine(settings, {**default, **settings.loras})  # merges a vision-tower adapter first
    spec = EngineSpec(
        engine=kind,  # type: ignore[arg-type]
        model=plan.model,
        port=engine_port,
        dtype=settings.dtype,
        max_model_len=max_model_len,
        images_per_prompt=settings.max_slices,
        adapters=plan.adapters,
        tensor_parallel=tensor_parallel,
        pipeline_parallel=pipeline_parallel,
        ray=ray,
        memory_fraction=memory_fraction if memory_fraction is not None else device.memory_fraction,
        extra=tuple(extra),
    )
    managed = ManagedEngine(spec, scratch.root() / f"{kind}.log")
    with Console(stderr=True).status(f"Starting {kind} for {settings.model}…") as status:

        def show(seconds: float, line: str) -> None:
            status.update(f"Starting {kind} for {settings.model} ({seconds:.0f} s) {line[:80]}")

        url = managed.start(progress=show)
    return managed, settings.model_copy(
        update={
            "engine": "openai",
            "engine_url": url,
            "engine_model": plan.model,
            "loras": plan.adapters,  # served by name from the start
            "adapter": None if plan.merged else settings.adapter,
        }
    )
