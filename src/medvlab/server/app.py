"""The lab server: one FastAPI app with the OpenAI-compatible API, REST routes, health and the web UI."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response

from medvlab import __version__, scratch
from medvlab.errors import MedvlabError
from medvlab.server.errors import install_error_handlers
from medvlab.server.routes import ROUTERS
from medvlab.server.security import Admission, ApiKeyMiddleware, BodyLimitMiddleware, key_ok
from medvlab.services import Lab, training

logger = logging.getLogger(__name__)


def _preload(lab: Lab) -> None:
    try:
        lab.backend.check()
    except MedvlabError as exc:  # keep serving: the UI and /healthz explain, requests get the fix
        logger.error("the model could not be loaded; the lab runs without it: %s", exc)


def _reap(stop: threading.Event, ttl_s: float) -> None:
    """Delete scratch files (UI downloads, Gradio's cache) older than ``ttl_s`` until ``stop``."""
    while not stop.wait(min(60.0, ttl_s / 4)):
        try:
            scratch.reap(ttl_s)
        except OSError as exc:  # a file in use or gone already: try again next round
            logger.warning("could not clean scratch files: %s", exc)


def create_app(
    lab: Lab | None = None,
    ui: bool = True,
    preload: bool = True,
    own_scratch: bool = False,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app around ``lab``. ``preload`` loads the model at start-up instead of on first use;
    ``own_scratch`` (the server process) removes the process's scratch folder at shutdown."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    lab = lab or Lab()

    scratch.sweep_stale()  # identified temp files a crashed earlier run could not remove
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:  # load in the background: the lab answers /healthz (status "loading") at once
            threading.Thread(target=_preload, args=(lab,), name="medvlab-preload", daemon=True).start()
        reaper = threading.Thread(
            target=_reap, args=(stop, lab.settings.ui_file_ttl_s), name="medvlab-reaper", daemon=True
        )
        reaper.start()
        try:
            yield
        finally:
            stop.set()
            training.stop_running(lab)  # a training job the lab started does not outlive it
            if on_shutdown is not None:  # e.g. stop a managed engine
                on_shutdown()
            if own_scratch:
                scratch.remove_root()

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
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    def healthz(response: Response) -> dict[str, object]:
        if lab.load_error:  # 503 while the model cannot load, so probes and load balancers see it
            response.status_code = 503
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
        # Gradio keeps uploads and the files it serves here: inside this process's private scratch
        # folder, removed at exit and swept at the next start-up after a crash (set before the UI's
        # components are built: they read it when constructed).
        os.environ["GRADIO_TEMP_DIR"] = str(scratch.root() / "ui")
        import gradio as gr

        from medvlab.ui.app import HEAD, THEME, build_ui

        # with API keys the UI asks for one at a login page (any user name, the key as password)
        auth = (lambda _user, password: key_ok(password, s.api_keys)) if s.api_keys else None
        demo = build_ui(lab)
        app = gr.mount_gradio_app(
            app,
            demo,
            path="/",
            footer_links=["api"],
            theme=THEME,
            head=HEAD,
            auth=auth,
            auth_message="medvlab: sign in with an API key as the password." if auth else None,
        )
        # Gradio checks that files named in a request were uploaded only once the Blocks has "launched";
        # a Blocks mounted into FastAPI never launches, so without this any server path could be named.
        demo.has_launched = True
    # outermost first: the size limit runs before anything reads a body, then the key check
    app.add_middleware(ApiKeyMiddleware, keys=list(s.api_keys))
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(s.max_upload_mb * 2**20 * 1.4) + 2**20)
    return app
