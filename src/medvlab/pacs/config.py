"""PACS endpoints from settings: ``MEDVLAB_PACS`` (a JSON mapping) and/or ``MEDVLAB_PACS_CONFIG`` (a JSON
file holding the same mapping). Secrets never appear in either: an endpoint names the environment
variables that hold its token or its user and password."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from medvlab.errors import ConfigError, look_up_option

EXAMPLE = 'MEDVLAB_PACS=\'{"orthanc": {"url": "http://127.0.0.1:8042/dicom-web"}}\''
"""How to configure one endpoint (every message that asks for one shows it)."""


@dataclass(frozen=True)
class PacsEndpoint:
    """One DICOMweb server the lab may search, read from and store to."""

    name: str
    """The name commands use (``--pacs NAME``)."""
    url: str
    """Base URL of the DICOMweb service, e.g. ``http://127.0.0.1:8042/dicom-web`` (Orthanc)."""
    token_env: str | None = None
    """Environment variable holding a bearer token sent as ``Authorization: Bearer <token>``."""
    user_env: str | None = None
    """Environment variable holding the user name for HTTP basic auth (with ``password_env``)."""
    password_env: str | None = None
    """Environment variable holding the password for HTTP basic auth."""
    timeout_s: float = 30.0
    """Longest wait for one answer of the PACS."""

    def __post_init__(self) -> None:
        where = f"PACS '{self.name}'"
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where} has url '{self.url}', which is not an http(s) address.", f"Use e.g. {EXAMPLE}."
            )
        if (self.user_env is None) != (self.password_env is None):
            raise ConfigError(
                f"{where} names only one of user_env / password_env.",
                "Name both variables for basic auth (or use token_env for a bearer token).",
            )
        if self.token_env and self.user_env:
            raise ConfigError(f"{where} names both a token and a user/password.", "Keep one way to sign in.")
        if self.timeout_s <= 0:
            raise ConfigError(f"{where} has timeout_s {self.timeout_s}.", "Use a positive number of seconds.")

    @property
    def credentials_hint(self) -> str:
        """Which variables hold this endpoint's credentials (for messages; never their values)."""
        if self.token_env:
            return f"the token in ${self.token_env}"
        if self.user_env:
            return f"the user and password in ${self.user_env} / ${self.password_env}"
        return f"no credentials (add token_env, or user_env and password_env, to PACS '{self.name}')"

    def secret(self, variable: str) -> str:
        """The value of a credentials variable; a clear error when it is unset."""
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(
                f"PACS '{self.name}' takes its credentials from ${variable}, which is not set.",
                f"export {variable}=... before running medvlab.",
            )
        return value


KEYS = tuple(f.name for f in fields(PacsEndpoint) if f.name != "name")


def _endpoint(name: str, spec: Any, origin: str) -> PacsEndpoint:
    if isinstance(spec, str):  # shorthand: "name": "http://host/dicom-web"
        spec = {"url": spec}
    if not isinstance(spec, Mapping) or "url" not in spec:
        raise ConfigError(
            f"PACS '{name}' in {origin} has no url.", f"Give each endpoint a url, e.g. {EXAMPLE}."
        )
    for key in spec:
        look_up_option(str(key), KEYS, f"key of PACS '{name}' in {origin}")
    try:
        return PacsEndpoint(name=name, **{k: spec[k] for k in spec})
    except (TypeError, AttributeError) as exc:  # a value of the wrong type (e.g. a list as url)
        raise ConfigError(f"PACS '{name}' in {origin} is malformed: {exc}.", f"Use e.g. {EXAMPLE}.") from exc


def read_file(path: Path) -> dict[str, Any]:
    """The endpoint mapping of a JSON config file."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"The PACS config file '{path}' cannot be read ({exc.strerror}).", "Check MEDVLAB_PACS_CONFIG."
        ) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"The PACS config file '{path}' is not valid JSON (line {exc.lineno}: {exc.msg}).",
            'Write it as a JSON object of endpoints, e.g. {"orthanc": {"url": "http://..."}}.',
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("pacs"), dict):
        data = data["pacs"]  # a config file may keep the mapping under "pacs"
    if not isinstance(data, dict):
        raise ConfigError(
            f"The PACS config file '{path}' does not hold a JSON object of endpoints.", f"See {EXAMPLE}."
        )
    return data


def endpoints(inline: Mapping[str, Any], config_file: Path | None = None) -> dict[str, PacsEndpoint]:
    """Every configured endpoint by name: those of ``MEDVLAB_PACS`` and those of the config file."""
    found = {n: _endpoint(n, s, "MEDVLAB_PACS") for n, s in inline.items()}
    if config_file is not None:
        for n, s in read_file(config_file).items():
            if n in found:
                raise ConfigError(
                    f"PACS '{n}' is defined both in MEDVLAB_PACS and in '{config_file}'.", "Keep one."
                )
            found[n] = _endpoint(n, s, f"'{config_file}'")
    return found


def pick(available: Mapping[str, PacsEndpoint], name: str | None) -> PacsEndpoint:
    """The endpoint called ``name`` (the only one when ``name`` is None), or a did-you-mean error."""
    if not available:
        raise ConfigError(
            "No PACS is configured.", f"Name one: {EXAMPLE} (or MEDVLAB_PACS_CONFIG=file.json)."
        )
    if name is None:
        if len(available) == 1:
            return next(iter(available.values()))
        raise ConfigError(
            f"{len(available)} PACS are configured and none was chosen.",
            f"Pass --pacs with one of: {', '.join(available)}.",
        )
    return available[look_up_option(name, available, "PACS")]
