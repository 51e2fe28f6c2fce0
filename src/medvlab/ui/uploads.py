"""Files the web UI receives: checked to be uploads (or inside the allowed folders), read into memory, and
deleted from disk at once, so no identified copy outlives the request that brought it.

Gradio hands event handlers and ``gr.api`` endpoints file *paths*. A client can name any path in the
request body, so every path is resolved (links followed) and must lie in Gradio's upload folder — which the
server points into this process's private scratch folder — or in ``Settings.allowed_paths``; anything else
gets one message that does not say whether the path exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvlab import scratch
from medvlab.config import Settings
from medvlab.errors import InputRefusedError
from medvlab.services.inputs import write_neutral

NOT_AN_UPLOAD = InputRefusedError(
    "A file named in this request was not uploaded in this session.",
    "Upload the file again with the upload button.",
)


@dataclass
class Uploads:
    """The uploaded files of one session, in memory: (original name, bytes), in upload order."""

    files: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def is_dicom(self) -> bool:
        return any(data[128:132] == b"DICM" or name.lower().endswith(".dcm") for name, data in self.files)

    def write(self, folder: Path) -> list[Path]:
        """The files written under neutral names (no patient name in a file name) into ``folder``."""
        return write_neutral(self.files, folder)


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def raw_paths(files: Any) -> list[str]:
    """Path strings from what Gradio passes: strings, FileData dicts (``gr.api``) or objects with ``path``."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    out = []
    for f in items:
        path = f if isinstance(f, str) else f.get("path") if isinstance(f, dict) else getattr(f, "path", None)
        if not isinstance(path, str) or not path:
            raise NOT_AN_UPLOAD
        out.append(path)
    return out


def checked_paths(files: Any, settings: Settings) -> list[Path]:
    """The files, each resolved and confined to the upload folder or the allowed folders."""
    roots = [upload_folder(), *(Path(r).expanduser().resolve() for r in settings.allowed_paths)]
    paths = []
    for raw in raw_paths(files):
        try:
            resolved = Path(raw).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise NOT_AN_UPLOAD from exc
        if not any(resolved.is_relative_to(r) for r in roots) or not resolved.is_file():
            raise NOT_AN_UPLOAD
        paths.append(resolved)
    return paths


def forget(paths: Sequence[Path], folder: Path | None = None) -> None:
    """Delete uploads from Gradio's upload folder (never files elsewhere)."""
    folder = folder or upload_folder()
    for p in paths:
        if p.is_relative_to(folder):
            scratch.wipe(p)
