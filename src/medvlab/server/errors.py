"""How errors become HTTP responses: the status of each class (``errors.HTTP_STATUS``) and an OpenAI-style
JSON body, ``{"error": {"message", "type", "code"}}``, for every failure — medvlab's own errors, request
validation, Starlette's HTTP errors (e.g. a body that is not JSON) and, last, anything unexpected (500,
logged with its traceback, never a plain-text body)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medvlab import errors as E

logger = logging.getLogger(__name__)


def body(message: str, code: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": code}}


def error_payload(exc: E.MedvlabError) -> dict[str, Any]:
    return body(str(exc), type(exc).__name__, E.http_status(exc))


def error_response(exc: E.MedvlabError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, E.OverloadedError) else None
    return JSONResponse(error_payload(exc), status_code=E.http_status(exc), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.MedvlabError)
    async def _medvlab(request: Request, exc: E.MedvlabError) -> JSONResponse:
        status = E.http_status(exc)
        logger.log(
            logging.ERROR if status >= 500 else logging.INFO,
            "%s %s -> %d %s",
            request.method,
            request.url.path,
            status,
            exc.problem,
        )
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body')}: {err.get('msg')}"
            for err in exc.errors()
        )
        message = f"Invalid request: {problems}. Fix: see the API schema at /docs."
        return JSONResponse(body(message, "RequestValidationError", 400), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. a body that is not JSON (or nested too deeply to parse), a wrong method, an unknown route
        fix = {
            400: "Send a valid JSON body (see /docs).",
            404: "See /docs for the routes.",
            405: "See /docs for the methods of this route.",
        }.get(exc.status_code, "See /docs.")
        message = f"{exc.detail} Fix: {fix}"
        return JSONResponse(
            body(message, f"HTTP{exc.status_code}", exc.status_code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s -> 500 unexpected %s", request.method, request.url.path, type(exc).__name__)
        message = f"Internal error ({type(exc).__name__}). Fix: see the server log; report it if it recurs."
        return JSONResponse(body(message, "InternalError", 500), status_code=500)
