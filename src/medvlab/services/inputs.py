"""The input policy of the lab: what a request may name, how big it may be once decoded, and how many
images decode at once.

Every face goes through :class:`Inputs`: data URIs (size-checked before base64 decoding), local paths
(confined to ``Settings.allowed_paths`` after resolving symlinks, so a link cannot lead out), remote URLs
(only when allowed), and uploads. Decoding is bounded twice: by ``LoadLimits`` that bind on the decoded
size (per slice, per request) and by a gate that lets at most ``Settings.max_concurrency`` images decode at
once, so many small compressed uploads cannot together exhaust memory while only a few generations run.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from medvlab.config import LoadLimits, Settings
from medvlab.errors import (
    ImageLoadError,
    ImageTooLargeError,
    InputRefusedError,
    OverloadedError,
    RequestError,
)
from medvlab.imaging import MedImage, load, load_bytes
from medvlab.imaging.dicom import Progress

MIME_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "application/dicom": ".dcm",
    "image/dicom": ".dcm",
    "application/x-nifti": ".nii",
    "image/nifti": ".nii",
    "application/gzip": ".nii.gz",
    "application/x-gzip": ".nii.gz",
}
"""Data-URI MIME types -> the file suffix the loaders expect (content is still sniffed)."""

PATH_FIX = (
    "Send the image as a base64 data URI, or start the server with "
    "MEDVLAB_ALLOWED_PATHS='[\"/data\"]' naming the folders it may read."
)


def mib(n: float) -> str:
    """A size for a message, precise enough that a body just over a limit does not read as the limit."""
    return f"{n / 2**20:.2f} MiB" if n < 10 * 2**20 else f"{n / 2**20:.1f} MiB"


def write_neutral(files: Sequence[tuple[str, bytes]], folder: Path) -> list[Path]:
    """Uploaded (name, bytes) written into ``folder`` as ``upload-0000.dcm``...: the suffix is kept (the
    loaders read it), the name is not (it can hold the patient's name)."""
    paths = []
    for i, (name, data) in enumerate(files):
        suffix = "".join(Path(name).suffixes[-2:])[:16] if Path(name).suffix else ""
        path = folder / f"upload-{i:04d}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def is_remote(ref: str) -> bool:
    return ref.startswith(("http://", "https://", "ftp://"))


def limits_for(settings: Settings) -> LoadLimits:
    """The decoded-size limits of one request: bytes read, pixels per slice, voxels in all."""
    return LoadLimits(
        max_file_mb=settings.max_upload_mb,
        max_pixels_per_slice=settings.max_slice_pixels,
        max_voxels=settings.max_request_voxels,
    )


class Inputs:
    """Turns what a request names into a :class:`MedImage`, under the lab's policy and limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = limits_for(settings)
        self._gate = threading.BoundedSemaphore(settings.max_concurrency)

    # -- the decode gate ---------------------------------------------------------------------------
    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold one of ``max_concurrency`` decode slots (waits up to the request timeout, then 429)."""
        if not self._gate.acquire(timeout=self.settings.request_timeout_s):
            raise OverloadedError(
                "Too many images are being decoded at once.",
                "Retry in a few seconds (MEDVLAB_MAX_CONCURRENCY raises the limit).",
                5,
            )
        try:
            yield
        finally:
            self._gate.release()

    # -- loading -----------------------------------------------------------------------------------
    def load(self, source: str | Path | Sequence[str | Path], progress: Progress | None = None) -> MedImage:
        """A file, a DICOM folder, or several files of one DICOM series (trusted caller: no path policy)."""
        with self.decoding():
            return load(source, limits=self.limits, progress=progress)

    def load_bytes(self, data: bytes, filename: str = "upload") -> MedImage:
        """An upload, decoded in memory (nothing is written to disk)."""
        with self.decoding():
            return load_bytes(data, filename, self.limits)

    def load_reference(self, ref: str) -> MedImage:
        """An image named in a request: a base64 ``data:`` URI, an allowed local path, or (when allowed) a
        remote URL."""
        ref = ref.strip()
        if ref.startswith("data:"):
            return self.load_bytes(*self.decode_data_uri(ref))
        if is_remote(ref):
            return self.load_bytes(*self.fetch_allowed(ref))
        return self.load(self.allowed_path(ref))

    # -- policy ------------------------------------------------------------------------------------
    def allowed_path(self, path: str) -> Path:
        """The resolved path if ``Settings.allowed_paths`` lets requests read it, else InputRefusedError.

        Symlinks are resolved first, so a link inside an allowed folder that points outside is refused.
        """
        target = Path(path.removeprefix("file://")).expanduser().resolve()
        for root in self.settings.allowed_paths:
            if target.is_relative_to(Path(root).expanduser().resolve()):
                return target
        raise InputRefusedError(f"Reading local path '{path}' is not allowed.", PATH_FIX)

    def allowed_files(self, path: str) -> list[Path]:
        """The files a request names by path (a file, or the files of a folder), each confined to the
        allowed folders after resolving links; a link that leads out is refused, not followed."""
        target = self.allowed_path(path)
        if not target.is_dir():
            return [target]
        roots = [Path(r).expanduser().resolve() for r in self.settings.allowed_paths]
        files = []
        for entry in sorted(target.iterdir()):
            if entry.is_dir():
                continue
            resolved = entry.resolve()
            if not any(resolved.is_relative_to(r) for r in roots):
                raise InputRefusedError(
                    f"'{entry.name}' in '{path}' is a link that leads outside the allowed folders.",
                    "Copy the file itself into the folder.",
                )
            if resolved.is_file():
                files.append(resolved)
        return files

    def decode_data_uri(self, ref: str) -> tuple[bytes, str]:
        """(bytes, file name) of a base64 ``data:`` URI, size-checked before decoding."""
        header, _, payload = ref.strip().partition(",")
        if not header.startswith("data:") or ";base64" not in header:
            raise RequestError(
                "Only base64 data URIs are accepted.", "Encode the file as data:<mime>;base64,<...>."
            )
        size = len(payload) * 3 // 4
        if size > self.limits.max_file_mb * 2**20:
            raise ImageTooLargeError(
                f"The image is {mib(size)}, above the limit of {mib(self.limits.max_file_mb * 2**20)}.",
                "Send a smaller image (MEDVLAB_MAX_UPLOAD_MB raises the limit).",
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(
                "The data URI is not valid base64.", "Re-encode the file with base64."
            ) from exc
        mime = header[5:].split(";")[0].lower()
        return data, "upload" + MIME_SUFFIXES.get(mime, "")

    def fetch_allowed(self, url: str) -> tuple[bytes, str]:
        """:meth:`fetch` when ``allow_remote_urls`` is on; otherwise the policy error."""
        if url.startswith(("http://", "https://")) and self.settings.allow_remote_urls:
            return self.fetch(url)
        raise InputRefusedError(
            "Remote image URLs are not fetched: the lab makes no outbound connections.",
            "Send the image itself as a base64 data URI (data:image/png;base64,...).",
        )

    def fetch(self, url: str) -> tuple[bytes, str]:
        """Download an image named by URL (only with ``allow_remote_urls``): size- and time-limited."""
        import httpx

        cap = int(self.limits.max_file_mb * 2**20)
        name = Path(url.split("?", 1)[0]).name or "download"
        try:
            with httpx.stream("GET", url, timeout=30.0, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise ImageLoadError(
                        f"Fetching '{url}' answered HTTP {response.status_code}.", "Check the URL."
                    )
                data = bytearray()
                for block in response.iter_bytes():
                    data += block
                    if len(data) > cap:
                        raise ImageTooLargeError(
                            f"'{url}' is larger than {mib(cap)}.", "Use a smaller image."
                        )
        except httpx.HTTPError as exc:
            raise ImageLoadError(f"Fetching '{url}' failed: {exc}", "Check the URL and the network.") from exc
        return bytes(data), name
