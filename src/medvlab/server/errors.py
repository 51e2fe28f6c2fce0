"""How medvlab errors become HTTP responses: a status per error class and an OpenAI-style JSON body."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from medvlab import errors as E
from medvlab.server.security import OverloadedError

logger = logging.getLogger(__name__)

STATUS: list[tuple[type[E.MedvlabError], int]] = [
    (E.ImageTooLargeError, 413),
    (E.UnsupportedFormatError, 415),
    (E.ImageLoadError, 422),
    (E.InputRefusedError, 403),
    (E.GatedModelError, 503),
    (E.ModelNotFoundError, 503),
    (E.ModelLoadError, 503),
    (E.DeviceError, 503),
    (E.NotFoundError, 404),
    (E.RequestError, 400),
    (E.ConfigError, 400),
]
"""First match wins, so subclasses come before their bases."""


def status_for(exc: E.MedvlabError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def error_payload(exc: E.MedvlabError) -> dict[str, Any]:
    kind = "invalid_request_error" if status_for(exc) < 500 else "server_error"
    return {"error": {"message": str(exc), "type": kind, "code": type(exc).__name__}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.MedvlabError)
    async def _medvlab(request: Request, exc: E.MedvlabError) -> JSONResponse:
        status = status_for(exc)
        logger.log(
            logging.ERROR if status >= 500 else logging.INFO,
            "%s %s -> %d %s",
            request.method,
            request.url.path,
            status,
            exc.problem,
        )
        return JSONResponse(error_payload(exc), status_code=status)

    @app.exception_handler(OverloadedError)
    async def _overloaded(request: Request, exc: OverloadedError) -> JSONResponse:
        return JSONResponse(
            error_payload(exc), status_code=429, headers={"Retry-After": str(exc.retry_after)}
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body')}: {err.get('msg')}"
            for err in exc.errors()
        )
        body = {
            "error": {
                "message": f"Invalid request: {problems}. Fix: see the API schema at /docs.",
                "type": "invalid_request_error",
                "code": "RequestValidationError",
            }
        }
        return JSONResponse(body, status_code=400)
