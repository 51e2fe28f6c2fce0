"""The lab server: one FastAPI app with the OpenAI-compatible API, REST routes, health and the web UI."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from medvlab import __version__
from medvlab.errors import MedvlabError
from medvlab.server import lab_api, openai_api
from medvlab.server.errors import install_error_handlers
from medvlab.services import Lab

logger = logging.getLogger(__name__)


def create_app(lab: Lab | None = None, ui: bool = True, preload: bool = True) -> FastAPI:
    """Build the app around ``lab``. ``preload`` loads the model at start-up instead of on first use."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    lab = lab or Lab()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:
            import anyio.to_thread

            try:
                await anyio.to_thread.run_sync(lambda: lab.backend)
            except MedvlabError as exc:  # keep serving: the UI and /healthz explain, requests get the fix
                logger.error("the model could not be loaded; the lab runs without it: %s", exc)
        yield

    app = FastAPI(
        title="medvlab",
        version=__version__,
        description="Medical vision lab API. Research and teaching use only, never a diagnosis.",
        lifespan=lifespan,
    )
    app.state.lab = lab
    install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(lab_api.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, object]:
        return {
            "status": "degraded" if lab.load_error else "ok",
            "model": lab.model_id,
            "model_loaded": lab.backend_loaded,
            "adapter": lab.adapter,
            "model_error": str(lab.load_error) if lab.load_error else None,
            "version": __version__,
        }

    if ui:
        import gradio as gr

        from medvlab.ui.app import THEME, build_ui

        app = gr.mount_gradio_app(app, build_ui(lab), path="/", footer_links=["api"], theme=THEME)
    return app
