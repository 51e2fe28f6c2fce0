"""The lab makes no outbound connections: not at start-up, not when the UI page or config is served."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medvlab.server.app import create_app
from medvlab.services import Lab


def test_server_and_ui_make_no_outbound_calls(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        try:
            if not ipaddress.ip_address(host).is_loopback:
                attempts.append(address)
                raise OSError("outbound connection blocked by test")
        except ValueError:  # a unix socket path or a host name
            if isinstance(address, tuple):
                attempts.append(address)
                raise OSError("outbound connection blocked by test") from None
        return real_connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", None):
            attempts.append(host)
            raise socket.gaierror("name resolution blocked by test")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    with TestClient(create_app(lab, ui=True)) as tc:
        assert tc.get("/").status_code == 200
        assert tc.get("/config").status_code == 200
        assert tc.get("/healthz").json()["status"] == "ok"
    assert attempts == []
