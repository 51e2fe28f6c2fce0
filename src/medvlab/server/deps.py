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

DISCONNECT_POLL_S = 0.2
"""How often an admitted or queued request checks that its client is still connected."""


def get_lab(request: Request) -> Lab:
    lab: Lab = request.app.state.lab
    return lab


LabDep = Annotated[Lab, Depends(get_lab)]


async def _watch(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client disconnects (the body has been read before dependencies run)."""
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


async def admitted(request: Request, lab: LabDep) -> AsyncIterator[Guard]:
    admission: Admission = request.app.state.admission
    cancel = threading.Event()
    watcher = asyncio.create_task(_watch(request, cancel))
    try:
        # waiting for a slot blocks a worker thread, not the event loop; it ends early if the client leaves
        guard = await anyio.to_thread.run_sync(Guard, admission, lab.settings.request_timeout_s, cancel)
        try:
            yield guard
        finally:
            guard.release()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


Admitted = Annotated[Guard, Depends(admitted)]
