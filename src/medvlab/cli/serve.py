"""``medvlab serve``: the lab server (REST + OpenAI-compatible API + web UI) on one port."""

from __future__ import annotations

import typer

from medvlab.cli import options


def serve(
    model: str | None = options.MODEL,
    device: str | None = options.DEVICE,
    dtype: str | None = options.DTYPE,
    adapter: str | None = options.ADAPTER,
    engine: str | None = options.ENGINE,
    engine_url: str | None = options.ENGINE_URL,
    engine_model: str | None = options.ENGINE_MODEL,
    engine_key_env: str | None = options.ENGINE_KEY_ENV,
    host: str | None = typer.Option(None, "--host", help="Interface to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Port (default 7860)."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Serve the API only, without the web UI."),
) -> None:
    """Start the lab server: web UI at /, OpenAI-compatible API at /v1, health at /healthz."""
    import logging

    import uvicorn

    from medvlab.config import settings_with
    from medvlab.server.app import create_app
    from medvlab.server.security import bind_host
    from medvlab.services import Lab

    settings = settings_with(
        model=model,
        device=device,
        dtype=dtype,
        adapter=adapter,
        host=host,
        port=port,
        engine=engine,
        engine_url=engine_url,
        engine_model=engine_model,
        engine_key_env=engine_key_env,
    )
    logging.getLogger("medvlab").setLevel(logging.INFO)
    bind, why = bind_host(settings.host, settings.api_keys)
    if why:
        typer.echo(why, err=True)
    app = create_app(Lab(settings), ui=not no_ui, own_scratch=True)
    auth = "API keys required" if settings.api_keys else "no API key: loopback only"
    typer.echo(f"medvlab serving {settings.model} at http://{bind}:{settings.port}/ ({auth})", err=True)
    uvicorn.run(app, host=bind, port=settings.port, log_level="info")
