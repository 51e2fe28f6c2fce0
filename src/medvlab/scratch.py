"""Scratch space: every temporary file medvlab writes lives under one folder owned by this process.

Uploads can carry a patient's identity (in DICOM headers, and in file names), so nothing identified may
outlive the request that needed it. All temporary folders are made under ``root()``, a private (0700)
folder named after this process (``medvlab-run-<pid>-<random>`` in the system temp dir) that is removed at
exit. ``sweep_stale()``, called at start-up, removes the folders of processes that are gone (a crash or
``kill -9`` skips the exit hook) and the per-request folders that earlier versions left behind. The web UI
points Gradio's upload and cache folder here as well (``GRADIO_TEMP_DIR``), and ``reap()`` deletes files
there older than a time to live, so downloads offered to a user disappear on their own.

Written by hand: the standard ``tempfile`` module makes private folders but knows neither which process
owns one nor how old the files in it are.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "medvlab-run-"
_OWN = re.compile(rf"^{PREFIX}(\d+)-")
LEGACY = re.compile(r"^medvlab-(seg-|fb-|report-)?[a-z0-9_]{8}$")
"""Per-request folders written by medvlab before the scratch root existed (``/tmp/medvlab-*``)."""

_lock = threading.Lock()
_root: Path | None = None


def root() -> Path:
    """This process's scratch folder (created on first use, removed at exit)."""
    global _root
    with _lock:
        if _root is None or not _root.is_dir():
            _root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            _root.chmod(0o700)
            atexit.register(_remove, _root)
        return _root


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def remove_root() -> None:
    """Remove this process's scratch folder now (a server's shutdown: uvicorn re-raises SIGTERM after a
    graceful stop, so exit hooks do not run)."""
    global _root
    with _lock:
        if _root is not None:
            _remove(_root)
            _root = None


@contextlib.contextmanager
def temp_dir(prefix: str = "tmp-") -> Iterator[Path]:
    """A folder for one request's files, removed when the block ends (whatever happens inside)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def keep_dir(prefix: str) -> Path:
    """A folder for files offered to a user for a while (downloads); ``reap()`` removes them later."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root()))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, not ours to touch
        return True
    return True


def sweep_stale(base: Path | None = None) -> list[Path]:
    """Remove scratch folders of processes that no longer run, and legacy per-request folders."""
    base = base or Path(tempfile.gettempdir())
    removed: list[Path] = []
    for entry in base.iterdir() if base.is_dir() else ():
        own = _OWN.match(entry.name)
        stale = (own is not None and not _alive(int(own.group(1)))) or bool(LEGACY.match(entry.name))
        if stale and entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        logger.info("removed %d stale scratch folder(s) left by earlier runs", len(removed))
    return removed


def reap(ttl_s: float, folder: Path | None = None) -> int:
    """Delete files older than ``ttl_s`` seconds under ``folder`` (default: the scratch root), and the
    folders left empty; returns how many files went."""
    folder = folder or root()
    cutoff = time.time() - ttl_s
    count = 0
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    count += 1
        for name in dirnames:
            with contextlib.suppress(OSError):
                (Path(dirpath) / name).rmdir()  # only succeeds when empty
    return count


def wipe(path: Path) -> None:
    """Remove an uploaded file and, when it sat alone in a per-upload folder, that folder too."""
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()
