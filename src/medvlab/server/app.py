"""The lab server: one FastAPI app with the OpenAI-compatible API, REST routes, health and the web UI."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from medvlab import __version__
from medvlab.errors import MedvlabError
from medvlab.server import lab_api, openai_api
from medvlab.server.errors import install_error_handlers
from medvlab.server.security import Admission, ApiKeyMiddleware, BodyLimitMiddleware, key_ok
from medvlab.services import Lab

logger = logging.getLogger(__name__)


def _preload(lab: Lab) -> None:
    try:
        _ = lab.backend
    except MedvlabError as exc:  # keep serving: the UI and /healthz explain, requests get the fix
        logger.error("the model could not be loaded; the lab runs without it: %s", exc)


def create_app(lab: Lab | None = None, ui: bool = True, preload: bool = True) -> FastAPI:
    """Build the app around ``lab``. ``preload`` loads the model at start-up instead of on first use."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    lab = lab or Lab()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:  # load in the background: the lab answers /healthz (status "loading") at once
            threading.Thread(target=_preload, args=(lab,), name="medvlab-preload", daemon=True).start()
        yield

    app = FastAPI(
        title="medvlab",
        version=__version__,
        description="Medical vision lab API. Research and teaching use only, never a diagnosis.",
        lifespan=lifespan,
    )
    app.state.lab = lab
    s = lab.settings
    app.state.admission = Admission(s.max_concurrency, s.max_queue, s.request_timeout_s)
    install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(lab_api.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, object]:
        return {
            "status": "degraded" if lab.load_error else "ok" if lab.backend_loaded else "loading",
            "model": lab.model_id,
            "model_loaded": lab.backend_loaded,
            "adapter": lab.adapter,
            "load": {
                **app.state.admission.state(),
                **lab.backend_load(),
            },
            "auth": bool(s.api_keys),
            "model_error": str(lab.load_error) if lab.load_error else None,
            "version": __version__,
        }

    if ui:
        import gradio as gr

        from medvlab.ui.app import THEME, build_ui

        # with API keys the UI asks for one at a login page (any user name, the key as password)
        auth = (lambda _user, password: key_ok(password, s.api_keys)) if s.api_keys else None
        app = gr.mount_gradio_app(
            app,
            build_ui(lab),
            path="/",
            footer_links=["api"],
            theme=THEME,
            auth=auth,
            auth_message="medvlab: sign in with an API key as the password." if auth else None,
        )
    # outermost first: the size limit runs before anything reads a body, then the key check
    app.add_middleware(ApiKeyMiddleware, keys=list(s.api_keys))
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(s.max_upload_mb * 2**20 * 1.4) + 2**20)
    return app
