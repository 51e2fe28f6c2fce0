"""Request dependencies shared by the routes: the lab, and admission as a yield dependency.

``Admitted`` gives a route a :class:`~medvlab.server.security.Guard`: a generation slot (429 with a
measured ``Retry-After`` when the queue is full) held until the response has been sent — streamed or
not — with a cancel event that is set when the client disconnects, so an abandoned request stops its
generation and a queued one leaves the queue (after full-stack-fastapi-template's ``api/deps.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request

from medvlab.server.security import Admission, Guard
from medvlab.services import Lab


async def get_lab(request: Request) -> Lab:
    """Async though it awaits nothing: FastAPI runs a plain ``def`` dependency in a worker thread, a
    thread hop on every request for an attribute read."""
    lab: Lab = request.app.state.lab
    return lab


LabDep = Annotated[Lab, Depends(get_lab)]


async def _watch(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client disconnects. The body has been read before dependencies run, so the
    next ASGI message can only be ``http.disconnect`` (sent when the client hangs up, or once the response
    is complete): waiting for it costs nothing per request, where polling ``is_disconnected()`` five times
    a second per request took 5-15 % of the lab's CPU while relaying an engine's answers. Starlette's own
    ``StreamingResponse.listen_for_disconnect`` waits the same way, beside this."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


async def admitted(request: Request, lab: LabDep) -> AsyncIterator[Guard]:
    admission: Admission = request.app.state.admission
    cancel = threading.Event()
    watcher = asyncio.create_task(_watch(request, cancel))
    try:
        timeout = lab.settings.request_timeout_s
        if admission.try_acquire():  # a free slot: no thread needed
            guard = Guard(admission, timeout, cancel, acquired=True)
        else:  # waiting blocks a worker thread, not the event loop; it ends early if the client leaves
            guard = await anyio.to_thread.run_sync(Guard, admission, timeout, cancel)
        try:
            yield guard
        finally:
            guard.release()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


Admitted = Annotated[Guard, Depends(admitted)]
