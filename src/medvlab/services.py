"""The use cases every face (CLI, REST API, web UI) calls. Faces hold no logic beyond parsing and display."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medvlab.config import GenerationOptions, Language, LoadLimits, PromptOptions, Settings
from medvlab.errors import ImageTooLargeError, InputRefusedError, ModelLoadError, RequestError
from medvlab.imaging import MedImage, load, load_bytes, render_slice
from medvlab.imaging.dicom import Progress
from medvlab.vlm.engine import Backend, StreamStats, load_backend
from medvlab.vlm.prompting import Turn, build_messages, resolve_language, with_disclaimer

logger = logging.getLogger(__name__)

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


class Lab:
    """One lab: settings, the loaded model (lazily, once) and the operations on images and questions."""

    def __init__(self, settings: Settings | None = None, backend: Backend | None = None) -> None:
        self.settings = settings or Settings()
        self.limits = LoadLimits(max_file_mb=self.settings.max_upload_mb)
        self._backend = backend
        self._backend_lock = threading.Lock()
        self.load_error: ModelLoadError | None = None
        """Why the model could not be loaded, if it could not; kept so requests fail fast with the fix."""

    @property
    def model_id(self) -> str:
        return self.settings.model

    @property
    def backend(self) -> Backend:
        """The model backend, loaded on first use (thread-safe)."""
        if self._backend is None:
            with self._backend_lock:
                if self.load_error is not None:
                    raise self.load_error
                if self._backend is None:
                    s = self.settings
                    try:
                        self._backend = load_backend(s.model, s.device, s.dtype, s.adapter, s.cache_dir)
                    except ModelLoadError as exc:
                        self.load_error = exc
                        raise
        return self._backend

    @property
    def backend_loaded(self) -> bool:
        return self._backend is not None

    # -- images ---------------------------------------------------------------------------------
    def load_image(
        self, source: str | Path | Sequence[str | Path], progress: Progress | None = None
    ) -> MedImage:
        """A file, a DICOM folder, or several files of one DICOM series."""
        return load(source, limits=self.limits, progress=progress)

    def load_image_bytes(self, data: bytes, filename: str = "upload") -> MedImage:
        return load_bytes(data, filename, self.limits)

    def load_local_path(self, path: str) -> MedImage:
        """A path named in a request: allowed only inside ``Settings.allowed_paths`` (no traversal out)."""
        target = Path(path.removeprefix("file://")).expanduser().resolve()
        for root in self.settings.allowed_paths:
            if target.is_relative_to(Path(root).expanduser().resolve()):
                return self.load_image(target)
        raise InputRefusedError(
            f"Reading local path '{path}' is not allowed.",
            "Send the image as a base64 data URI, or start the server with "
            "MEDVLAB_ALLOWED_PATHS='[\"/data\"]' naming the folders it may read.",
        )

    def load_image_reference(self, ref: str) -> MedImage:
        """An image named in a request: a base64 ``data:`` URI, or a local path when allowed.

        Remote URLs are refused: the lab makes no outbound connections.
        """
        ref = ref.strip()
        if ref.startswith("data:"):
            header, _, payload = ref.partition(",")
            if ";base64" not in header:
                raise RequestError(
                    "Only base64 data URIs are accepted.", "Encode the file as data:<mime>;base64,<...>."
                )
            if len(payload) * 3 / 4 > self.limits.max_file_mb * 2**20:
                raise ImageTooLargeError(
                    f"The image is larger than {self.limits.max_file_mb} MiB.", "Send a smaller image."
                )
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise RequestError(
                    "The data URI is not valid base64.", "Re-encode the file with base64."
                ) from exc
            mime = header[5:].split(";")[0].lower()
            return self.load_image_bytes(data, "upload" + MIME_SUFFIXES.get(mime, ""))
        if ref.startswith(("http://", "https://", "ftp://")):
            raise InputRefusedError(
                "Remote image URLs are not fetched: the lab makes no outbound connections.",
                "Send the image itself as a base64 data URI (data:image/png;base64,...).",
            )
        return self.load_local_path(ref)

    @staticmethod
    def preview(image: MedImage, index: int = 0, window: str | None = None) -> np.ndarray:
        """One slice rendered for display, ``(rows, cols, 3)`` uint8."""
        return render_slice(image, index, window)

    # -- questions ------------------------------------------------------------------------------
    def prompt_options(
        self, window: str | None = None, max_slices: int | None = None, language: Language | None = None
    ) -> PromptOptions:
        return PromptOptions(
            language=language, window=window, max_slices=max_slices or self.settings.max_slices
        )

    def generation_options(self, **overrides: Any) -> GenerationOptions:
        base = GenerationOptions(max_new_tokens=self.settings.max_new_tokens)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def chat(
        self,
        turns: list[Turn],
        prompt: PromptOptions | None = None,
        generation: GenerationOptions | None = None,
        stats: StreamStats | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Stream the answer to the last user turn, ending with the disclaimer in the user's language.

        Validation, image rendering and model loading happen before this returns, so a face can report
        those errors before it starts streaming.
        """
        if not turns or turns[-1].role != "user":
            raise RequestError(
                "The conversation must end with a user message.", "Add the question as the last message."
            )
        if not turns[-1].text.strip():
            raise RequestError("The question is empty.", "Type a question about the image.")
        prompt = prompt or self.prompt_options()
        generation = generation or self.generation_options()
        messages = build_messages(turns, prompt)
        language = resolve_language(turns, prompt)
        backend = self.backend
        return with_disclaimer(backend.stream(messages, generation, stats, cancel), language)

    def ask(
        self,
        image: MedImage | str | Path | Sequence[str | Path],
        question: str,
        prompt: PromptOptions | None = None,
        generation: GenerationOptions | None = None,
        stats: StreamStats | None = None,
    ) -> Iterator[str]:
        """One image (or volume), one question -> streamed answer."""
        img = image if isinstance(image, MedImage) else self.load_image(image)
        return self.chat([Turn("user", question, [img])], prompt, generation, stats)
