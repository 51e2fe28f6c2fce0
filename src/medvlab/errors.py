"""One error hierarchy for medvlab.

Every error carries two parts: ``problem`` (what went wrong, naming the input) and ``fix`` (what the
user can do about it). ``str(error)`` joins them, so a CLI can print one line and an API can return
it as a JSON message. The faces map classes to exit codes / HTTP statuses; library code only raises.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MedvlabError(Exception):
    """Base class of every error medvlab raises on purpose."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


class ConfigError(MedvlabError):
    """A setting, flag or option has a value medvlab cannot use."""


class ImageLoadError(MedvlabError):
    """A file could not be read as a medical image."""


class UnsupportedFormatError(ImageLoadError):
    """The file is not a format medvlab reads (or not an image at all)."""


class ImageTooLargeError(ImageLoadError):
    """The image is larger than the configured limits (pixels, slices or bytes)."""


class DeviceError(MedvlabError):
    """The requested accelerator is not available or not usable."""


class ModelLoadError(MedvlabError):
    """A model or processor could not be loaded."""


class ModelNotFoundError(ModelLoadError):
    """The model id or folder does not exist (or is not cached while offline)."""


class GatedModelError(ModelLoadError):
    """The model exists but its licence has not been accepted / no token was given."""


class InputRefusedError(MedvlabError):
    """An input was refused by policy (local paths, remote URLs, sizes)."""


class RequestError(MedvlabError):
    """A request is malformed (wrong fields, empty question, unknown model)."""


class ExportError(MedvlabError):
    """An exported model does not reproduce the original within tolerance."""


class NotFoundError(MedvlabError):
    """A named resource (model, preset, route object) does not exist."""


class PromptTooLongError(RequestError):
    """The question (with its images) does not fit the model's context window."""


class GenerationError(MedvlabError):
    """The model was loaded but generating an answer failed (not a client error, not a load failure)."""


class EngineUnavailableError(ModelLoadError):
    """The serving engine (a remote OpenAI-compatible server) cannot be reached or refuses the lab."""


class EngineTimeoutError(GenerationError):
    """The serving engine did not answer in time."""


class StructuredOutputError(GenerationError):
    """The model's constrained output did not complete (usually: too few new tokens)."""


class CapabilityError(MedvlabError):
    """The serving engine cannot do what was asked (e.g. attention maps from a remote engine)."""


class ExplainError(MedvlabError):
    """An attention map cannot be computed for this model or input."""


class KnowledgeBaseError(MedvlabError):
    """A knowledge-base file or query cannot be used."""


class DataError(MedvlabError):
    """A training record is malformed; the message names the file and line."""


class OverloadedError(MedvlabError):
    """More requests than the server runs plus queues; ``retry_after`` says when to try again (s)."""

    def __init__(self, problem: str, fix: str, retry_after: int) -> None:
        super().__init__(problem, fix)
        self.retry_after = retry_after


class ClientGoneError(MedvlabError):
    """The client disconnected before its request was served; the work was dropped."""


class ConflictError(MedvlabError):
    """The lab is busy with something that must finish first (e.g. a training job is already running)."""


class PacsError(MedvlabError):
    """A PACS (DICOMweb server) answered with an error the lab cannot recover from."""


class PacsUnavailableError(PacsError):
    """The PACS cannot be reached (down, wrong URL, timed out)."""


class PacsAuthError(PacsError):
    """The PACS refused the lab's credentials (HTTP 401/403 from the PACS)."""


class PacsNotFoundError(NotFoundError):
    """The study or series asked for is not in the PACS."""


class PacsStoreError(PacsError):
    """The PACS refused some of the objects sent to it (STOW-RS); the message says which were stored."""


HTTP_STATUS: list[tuple[type[MedvlabError], int]] = [
    (ImageTooLargeError, 413),
    (UnsupportedFormatError, 415),
    (ImageLoadError, 422),
    (InputRefusedError, 403),
    (GatedModelError, 503),
    (EngineUnavailableError, 503),
    (ModelNotFoundError, 503),
    (ModelLoadError, 503),
    (DeviceError, 503),
    (PacsNotFoundError, 404),
    (NotFoundError, 404),
    (PromptTooLongError, 400),
    (RequestError, 400),
    (ConfigError, 400),
    (KnowledgeBaseError, 422),
    (DataError, 422),
    (ExplainError, 422),
    (CapabilityError, 501),
    (StructuredOutputError, 502),
    (EngineTimeoutError, 504),
    (GenerationError, 500),
    (ExportError, 500),
    (OverloadedError, 429),
    (ConflictError, 409),
    (ClientGoneError, 499),
    (PacsUnavailableError, 503),
    (PacsAuthError, 403),
    (PacsStoreError, 502),
    (PacsError, 502),
]
"""The HTTP status of each error class (first match wins, so subclasses come before their bases).
Every class above has its own row; a test walks the hierarchy to keep it so."""


def http_status(exc: MedvlabError) -> int:
    return next((code for cls, code in HTTP_STATUS if isinstance(exc, cls)), 500)


def look_up_option(value: str, options: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``options`` (case-insensitive), else raise with a suggestion.

    Modelled on MONAI's ``look_up_option``: the message names the bad value, the closest option
    ("did you mean ...") and the full list.
    """
    opts = list(options)
    lowered = {o.lower(): o for o in opts}
    key = value.strip().lower()
    if key in lowered:
        return lowered[key]
    close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.5)
    hint = f"did you mean '{lowered[close[0]]}'? " if close else ""
    raise ConfigError(f"Unknown {what} '{value}'.", f"{hint}Choose one of: {', '.join(opts)}.")
