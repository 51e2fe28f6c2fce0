"""``Lab``: the facade every face holds — settings plus the lazily built parts (model backend, knowledge base,
feedback store, segmentation models). Each use case lives in its own module (``inputs``, ``answer``,
``report``, ``segmentation``, ``knowledge``, ``feedback``, ``adapters``); the methods here delegate to them
so a face never reaches into a part."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medvlab.config import GenerationOptions, Language, PromptOptions, Settings
from medvlab.errors import CapabilityError, ModelLoadError
from medvlab.imaging import MedImage, render_slice
from medvlab.imaging.dicom import Progress
from medvlab.services import adapters, feedback, knowledge, segmentation
from medvlab.services import answer as answering
from medvlab.services.inputs import Inputs
from medvlab.vlm.engine import Backend, load_backend
from medvlab.vlm.generation import StreamStats
from medvlab.vlm.prompting import Turn

if TYPE_CHECKING:
    from PIL import Image

    from medvlab.kb.retrieve import Hit, KnowledgeBase
    from medvlab.seg.infer import Predictor, Segmentation
    from medvlab.store.feedback import FeedbackStore

logger = logging.getLogger(__name__)

CAPABILITY_NAMES = {
    "structured_output": "structured (JSON-schema) answers",
    "attention_maps": "attention maps",
    "adapters": "swapping adapters at run time",
}


class Lab:
    """One lab: settings, the loaded model (lazily, once) and the operations on images and questions."""

    def __init__(self, settings: Settings | None = None, backend: Backend | None = None) -> None:
        self.settings = settings or Settings()
        self.inputs = Inputs(self.settings)
        self.limits = self.inputs.limits
        self._backend = backend
        self._backend_lock = threading.Lock()
        self.load_error: ModelLoadError | None = None
        """Why the model could not be loaded, if it could not; kept so requests fail fast with the fix."""
        self._kb: KnowledgeBase | None = None
        self._feedback: FeedbackStore | None = None
        self.segmenter = segmentation.Segmenter(self.settings.seg_model, self.settings.device)

    # -- parts ------------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        s = self.settings
        return (s.engine_model or s.model) if s.engine == "openai" else s.model

    @property
    def adapter(self) -> str | None:
        """The adapter currently applied (hot-swappable), or None for the base model."""
        return self._backend.adapter if self._backend is not None else self.settings.adapter

    @property
    def backend(self) -> Backend:
        """The model backend, loaded on first use (thread-safe)."""
        if self._backend is None:
            with self._backend_lock:
                if self.load_error is not None:
                    raise self.load_error
                if self._backend is None and self.settings.engine == "openai":
                    self._backend = self._remote()
                if self._backend is None:
                    s = self.settings
                    try:
                        backend = load_backend(
                            s.model, s.device, s.dtype, s.adapter, s.cache_dir, s.max_batch_size
                        )
                        for name, path in s.loras.items():
                            backend.load_adapter(name, path)
                        self._backend = backend
                    except ModelLoadError as exc:
                        self.load_error = exc
                        raise
        return self._backend

    def _remote(self) -> Backend:
        """The remote engine (no connection is made here: a request meets the engine's state then)."""
        from medvlab.vlm.remote import OpenAIBackend

        s = self.settings
        assert s.engine_url is not None  # Settings checks it
        backend = OpenAIBackend(
            s.engine_url,
            self.model_id,
            s.engine_key_env,
            read_timeout_s=s.engine_timeout_s,
            served_adapters=dict(s.loras),  # the engine serves these by name (started with them)
        )
        if s.adapter:  # answers use it unless a request names another (loaded on the engine if new)
            backend.set_adapter(str(Path(s.adapter).resolve()))
        return backend

    @property
    def backend_loaded(self) -> bool:
        return self._backend is not None

    def backend_load(self) -> dict[str, int]:
        """Generations running now, batches run and the largest batch so far (0 before the model loads)."""
        if self._backend is None:
            return {"generating": 0, "batches": 0, "largest_batch": 0}
        return self._backend.load_stats()

    def require(self, capability: str) -> None:
        """CapabilityError (501) naming the engine when the serving engine cannot do ``capability``."""
        backend = self.backend
        if not getattr(backend.capabilities, capability):
            what = CAPABILITY_NAMES.get(capability, capability)
            raise CapabilityError(
                f"The '{backend.engine}' engine serving {self.model_id} cannot do {what}.",
                "Serve the model in-process (the transformers engine, medvlab's default) for this.",
            )

    @property
    def kb(self) -> KnowledgeBase:
        if self._kb is None:
            self._kb = knowledge.open_kb(self.settings.kb_url, self.settings.cache_dir)
        return self._kb

    @property
    def feedback(self) -> FeedbackStore:
        if self._feedback is None:
            folder = self.settings.data_dir or self.settings.cache_dir / "data"
            self._feedback = feedback.open_store(self.settings.store_url, folder)
        return self._feedback

    # -- images (services.inputs) -------------------------------------------------------------------
    def load_image(
        self, source: str | Path | Sequence[str | Path], progress: Progress | None = None
    ) -> MedImage:
        """A file, a DICOM folder, or several files of one DICOM series (within the request limits)."""
        return self.inputs.load(source, progress)

    def load_image_bytes(self, data: bytes, filename: str = "upload") -> MedImage:
        return self.inputs.load_bytes(data, filename)

    def load_local_path(self, path: str) -> MedImage:
        """A path named in a request: allowed only inside ``Settings.allowed_paths`` (no traversal out)."""
        return self.inputs.load(self.inputs.allowed_path(path))

    def allowed_local_path(self, path: str) -> Path:
        return self.inputs.allowed_path(path)

    def decode_data_uri(self, ref: str) -> tuple[bytes, str]:
        return self.inputs.decode_data_uri(ref)

    def load_image_reference(self, ref: str) -> MedImage:
        """An image named in a request: a base64 ``data:`` URI, a local path when allowed, a remote URL
        only with ``allow_remote_urls`` (the lab makes no outbound connections otherwise)."""
        return self.inputs.load_reference(ref)

    def fetch_allowed(self, url: str) -> tuple[bytes, str]:
        return self.inputs.fetch_allowed(url)

    @staticmethod
    def preview(image: MedImage, index: int = 0, window: str | None = None) -> np.ndarray:
        """One slice rendered for display, ``(rows, cols, 3)`` uint8."""
        return render_slice(image, index, window)

    # -- questions (services.answer) ----------------------------------------------------------------
    def prompt_options(
        self, window: str | None = None, max_slices: int | None = None, language: Language | None = None
    ) -> PromptOptions:
        return PromptOptions(
            language=language, window=window, max_slices=max_slices or self.settings.max_slices
        )

    def generation_options(self, **overrides: Any) -> GenerationOptions:
        base = GenerationOptions(max_new_tokens=self.settings.max_new_tokens)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def answer(self, turns: list[Turn], *args: Any, **kwargs: Any) -> answering.Answer:
        """See :func:`medvlab.services.answer.answer` (plain, structured, grounded, volume-grounded)."""
        return answering.answer(self, turns, *args, **kwargs)

    def chat(
        self,
        turns: list[Turn],
        prompt: PromptOptions | None = None,
        generation: GenerationOptions | None = None,
        stats: StreamStats | None = None,
        cancel: threading.Event | None = None,
        grounding: Sequence[Hit] = (),
        measurements: Mapping[str, float] | None = None,
    ) -> Iterator[str]:
        """Stream the answer to the last user turn (see :func:`medvlab.services.answer.chat`)."""
        return answering.chat(self, turns, prompt, generation, stats, cancel, grounding, measurements)

    def structured(
        self,
        turns: list[Turn],
        prompt: PromptOptions | None = None,
        generation: GenerationOptions | None = None,
        stats: StreamStats | None = None,
        max_chars: int = 400,
        schema: dict[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """The answer as a JSON object (see :func:`medvlab.services.answer.structured_answer`)."""
        return answering.structured_answer(self, turns, prompt, generation, stats, max_chars, schema, cancel)

    def explain(
        self,
        turns: list[Turn],
        answer_text: str,
        prompt: PromptOptions | None = None,
        span: tuple[int, int] | None = None,
    ) -> list[tuple[Image.Image, str]]:
        """Attention heatmaps of an answer over every picture of the conversation, with labels."""
        return answering.explain(self, turns, answer_text, prompt, span)

    def attention_maps(
        self,
        turns: list[Turn],
        answer_text: str,
        prompt: PromptOptions | None = None,
        span: tuple[int, int] | None = None,
    ) -> list[answering.AttentionMap]:
        """The same maps with their grids and volume slice numbers (the viewer draws them as an overlay)."""
        return answering.attention_maps(self, turns, answer_text, prompt, span)

    def vqa_answer(self, image: str | Path, question: str, closed: bool, max_new_tokens: int = 64) -> str:
        return answering.vqa_answer(self, image, question, closed, max_new_tokens)

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

    # -- knowledge base (services.knowledge) --------------------------------------------------------
    def kb_add(self, paths: Sequence[str | Path]) -> int:
        """Add report snippets from files/folders; returns how many were added."""
        return knowledge.add_files(self.kb, paths)

    def kb_add_texts(self, items: Sequence[tuple[str, str, str]]) -> list[int]:
        """Add (title, text, source) snippets; returns their ids."""
        return knowledge.add_texts(self.kb, items)

    def kb_count(self) -> int:
        return self.kb.store.count()

    def kb_search(self, query: str, k: int = 5) -> list[Hit]:
        return knowledge.search(self.kb, query, k)

    def kb_add_checked(self, paths: Sequence[str | Path]) -> knowledge.Added:
        """Add report files; -> how many were read, new, and the total (re-added texts are not doubled)."""
        return knowledge.add_files_checked(self.kb, paths)

    def kb_list(self, page: int = 1, per_page: int = 20, query: str = "") -> dict[str, Any]:
        """One page of snippets as JSON (see :func:`medvlab.services.knowledge.listing`)."""
        return knowledge.listing(self.kb, page, per_page, query)

    def kb_remove(self, snippet_id: int) -> dict[str, object]:
        """Remove one snippet by id (NotFoundError if unknown); -> the removed snippet as JSON."""
        return knowledge.remove(self.kb, snippet_id).as_dict()

    def kb_clear(self) -> int:
        """Remove every snippet; -> how many were removed."""
        return knowledge.clear(self.kb)

    # -- feedback (services.feedback) and adapters (services.adapters) ------------------------------
    def record_feedback(self, image_files: Sequence[str | Path], *args: Any, **kwargs: Any) -> int:
        """Store a rating with a de-identified copy of the image (see :func:`feedback.record`)."""
        return feedback.record(self, image_files, *args, **kwargs)

    def record_feedback_reference(self, ref: str, *args: Any, **kwargs: Any) -> int:
        return feedback.record_reference(self, ref, *args, **kwargs)

    def record_feedback_uploads(self, uploads: Sequence[tuple[str, bytes]], *args: Any, **kwargs: Any) -> int:
        return feedback.record_uploads(self, uploads, *args, **kwargs)

    def feedback_export(self, fmt: str) -> bytes:
        return feedback.export(self.feedback, fmt)

    def feedback_export_to(self, path: Path, fmt: str) -> int:
        """Write the stored feedback as JSONL training data to ``path``; returns the records written."""
        return self.feedback.export(path, fmt)

    def feedback_count(self) -> int:
        return self.feedback.count()

    def set_adapter(self, path: str | None) -> str | None:
        """Apply a LoRA adapter to the loaded model, or return to the base model (None), without a restart."""
        self.require("adapters")
        return adapters.set_adapter(self.backend, self.settings, path)

    def adapters(self) -> dict[str, str]:
        """Adapters served at once by name (name -> folder); a request picks one with ``model``."""
        return self._backend.adapters if self._backend is not None else dict(self.settings.loras)

    def load_adapter(self, name: str, path: str) -> dict[str, str]:
        self.require("adapters")
        return adapters.load_adapter(self.backend, self.settings, name, path)

    def unload_adapter(self, name: str) -> dict[str, str]:
        self.require("adapters")
        return adapters.unload_adapter(self.backend, name)

    # -- segmentation (services.segmentation) -------------------------------------------------------
    def predictor(self, model: str | None = None) -> Predictor:
        return self.segmenter.predictor(model)

    def segment(
        self, image: MedImage, model: str | None = None, progress: Progress | None = None
    ) -> Segmentation:
        """Segment a grayscale volume: labels on its grid and each structure's volume in mL."""
        return self.segmenter.segment(image, model, progress)

    def segment_to_dicom_seg(self, ref: str, model: str | None = None) -> tuple[Segmentation, bytes]:
        return self.segmenter.to_dicom_seg(self.inputs, ref, model)

    def segment_to_dicom_sr(self, ref: str, model: str | None = None) -> tuple[Segmentation, bytes]:
        """The TID 1500 measurement SR of the volumes (it references a SEG; send both to a PACS)."""
        seg, _, sr = self.segmenter.to_dicom_objects(self.inputs, ref, model)
        assert sr is not None
        return seg, sr

    @staticmethod
    def mask_nifti(seg: Segmentation, image: MedImage) -> bytes:
        return segmentation.mask_nifti(seg, image)

    @staticmethod
    def overlay(image: MedImage, seg: Segmentation, index: int = 0, window: str | None = None) -> np.ndarray:
        return segmentation.overlay(image, seg, index, window)

    # -- reports (services.report) ------------------------------------------------------------------
    def report(self, image: MedImage, qa: Sequence[tuple[str, str]], **kwargs: Any) -> bytes:
        """A PDF report of one image and its conversation (see :func:`report.build_report`)."""
        from medvlab.services.report import build_report

        return build_report(self, image, qa, **kwargs)
