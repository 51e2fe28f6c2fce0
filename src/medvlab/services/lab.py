"""The use cases every face (CLI, REST API, web UI) calls. Faces hold no logic beyond parsing and display."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medvlab.config import GenerationOptions, Language, PromptOptions, Settings
from medvlab.errors import InputRefusedError, ModelLoadError, RequestError
from medvlab.imaging import MedImage, render_slice
from medvlab.imaging.dicom import Progress
from medvlab.services.inputs import Inputs, is_remote
from medvlab.vlm.engine import Backend, load_backend
from medvlab.vlm.generation import StreamStats
from medvlab.vlm.prompting import (
    DISCLAIMERS,
    Turn,
    build_messages,
    image_parts,
    measurements_footer,
    measurements_text,
    resolve_language,
    strip_disclaimer,
    with_disclaimer,
)

if TYPE_CHECKING:
    from PIL import Image

    from medvlab.kb.retrieve import Hit, KnowledgeBase
    from medvlab.seg.infer import Predictor, Segmentation
    from medvlab.store.feedback import FeedbackStore

logger = logging.getLogger(__name__)


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
        self.adapter: str | None = self.settings.adapter
        """The adapter currently applied (hot-swappable), or None for the base model."""
        self._predictors: dict[str, Predictor] = {}
        self._seg_lock = threading.Lock()
        self._seg_run_lock = threading.Lock()

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
                        self._backend = load_backend(
                            s.model, s.device, s.dtype, s.adapter, s.cache_dir, s.max_batch_size
                        )
                    except ModelLoadError as exc:
                        self.load_error = exc
                        raise
        return self._backend

    @property
    def backend_loaded(self) -> bool:
        return self._backend is not None

    def backend_load(self) -> dict[str, int]:
        """Generations running now, batches run and the largest batch so far (0 before the model loads)."""
        backend = self._backend
        batcher = getattr(backend, "batcher", None)
        return {
            "generating": int(getattr(backend, "generating", 0)),
            "batches": int(getattr(batcher, "batches", 0)),
            "largest_batch": int(getattr(batcher, "largest", 0)),
        }

    # -- images (the input policy lives in services.inputs) ------------------------------------
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
        """An image named in a request: a base64 ``data:`` URI, or a local path when allowed.

        Remote URLs are refused unless ``allow_remote_urls``: the lab makes no outbound connections.
        """
        return self.inputs.load_reference(ref)

    def fetch_allowed(self, url: str) -> tuple[bytes, str]:
        return self.inputs.fetch_allowed(url)

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

    def _grounded(self, turns: list[Turn], hits: Sequence[Hit], language: str) -> list[Turn]:
        """The turns with prior-report snippets put before the last question."""
        if not hits:
            return turns
        from medvlab.kb.retrieve import grounding_text

        return _before_question(turns, grounding_text(hits, language))

    def _check(self, turns: list[Turn]) -> None:
        if not turns or turns[-1].role != "user":
            raise RequestError(
                "The conversation must end with a user message.", "Add the question as the last message."
            )
        if not turns[-1].text.strip():
            raise RequestError("The question is empty.", "Type a question about the image.")

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
        """Stream the answer to the last user turn, ending with the disclaimer in the user's language.

        ``grounding`` (knowledge-base hits) is shown to the model before the question, and listed as
        references after the answer; ``measurements`` (structure -> mL from :meth:`segment`) likewise,
        so the answer can cite measured volumes. Validation, image rendering and model loading happen
        before this returns, so a face can report those errors before it starts streaming.
        """
        self._check(turns)
        prompt = prompt or self.prompt_options()
        generation = generation or self.generation_options()
        language = resolve_language(turns, prompt)
        turns = self._grounded(turns, grounding, language)
        if measurements:
            turns = _before_question(
                turns, measurements_text(measurements, language, self.settings.seg_model)
            )
        messages = build_messages(turns, prompt)
        backend = self.backend
        chunks = backend.stream(messages, generation, stats, cancel)
        if grounding:
            from medvlab.kb.retrieve import references_text

            chunks = _then(chunks, references_text(grounding, language))
        if measurements:
            chunks = _then(chunks, measurements_footer(measurements, language, self.settings.seg_model))
        return with_disclaimer(chunks, language)

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
        """The answer as a JSON object valid against ``schema`` (default: the findings schema).

        Decoding is constrained, so the object always parses; ``disclaimer`` is added to it.
        """
        from medvlab.vlm import structured as st

        self._check(turns)
        prompt = prompt or self.prompt_options()
        language = resolve_language(turns, prompt)
        schema = st.check_schema(schema) if schema is not None else st.schema_for(max_chars)
        generation = replace(generation or self.generation_options(), json_schema=schema)
        last = turns[-1]
        asked = [*turns[:-1], Turn("user", last.text + st.instruction(language), last.images)]
        text = "".join(self.backend.stream(build_messages(asked, prompt), generation, stats, cancel))
        data = st.parse(text, schema)
        data["disclaimer"] = DISCLAIMERS[language]
        return data

    def explain(
        self,
        turns: list[Turn],
        answer: str,
        prompt: PromptOptions | None = None,
        span: tuple[int, int] | None = None,
    ) -> list[tuple[Image.Image, str]]:
        """Attention heatmaps of ``answer`` over every picture of the first user turn, with labels."""
        from medvlab.vlm.explain import attention_grids, heatmap_images

        self._check(turns)
        prompt = prompt or self.prompt_options()
        messages = build_messages(turns, prompt)
        grids = attention_grids(self.backend, messages, strip_disclaimer(answer) or answer, span)
        parts = [p for t in turns for img in t.images for p in image_parts(img, prompt)]
        pictures = heatmap_images([p.image.resize(_display_size(p.image)) for p in parts], grids)
        return [
            (pic, f"attention · {part.label}" if part.label else "attention")
            for pic, part in zip(pictures, parts, strict=True)
        ]

    # -- knowledge base -------------------------------------------------------------------------
    @property
    def kb(self) -> KnowledgeBase:
        if self._kb is None:
            from medvlab.kb.retrieve import KnowledgeBase

            url = self.settings.kb_url
            self._kb = KnowledgeBase(url) if url else KnowledgeBase.at(self.settings.cache_dir / "kb.sqlite")
        return self._kb

    def kb_add(self, paths: Sequence[str | Path]) -> int:
        """Add report snippets from files/folders; returns how many were added."""
        from medvlab.kb.ingest import read_snippets

        snippets = read_snippets([Path(p) for p in paths])
        if not snippets:
            raise RequestError(
                "No report snippets were found in the given files.", "Add .txt/.md/.json/.csv files."
            )
        return len(self.kb.add(snippets))

    def kb_add_texts(self, items: Sequence[tuple[str, str, str]]) -> list[int]:
        """Add (title, text, source) snippets; returns their ids."""
        from medvlab.kb.store import Snippet
        from medvlab.vlm.prompting import detect_language

        return self.kb.add([Snippet(t, text, src, detect_language(text)) for t, text, src in items])

    def kb_count(self) -> int:
        return self.kb.store.count()

    def kb_search(self, query: str, k: int = 5) -> list[Hit]:
        return self.kb.search(query, k)

    # -- feedback and adapters -------------------------------------------------------------------
    @property
    def feedback(self) -> FeedbackStore:
        if self._feedback is None:
            from medvlab.store.feedback import FeedbackStore

            folder = self.settings.data_dir or self.settings.cache_dir / "data"
            url = self.settings.store_url
            self._feedback = FeedbackStore(url, folder / "images") if url else FeedbackStore.at(folder)
        return self._feedback

    def record_feedback(
        self,
        image_files: Sequence[str | Path],
        question: str,
        answer: str,
        rating: int,
        better_answer: str | None = None,
        window: str | None = None,
        max_slices: int | None = None,
    ) -> int:
        """Store a rating (+1/-1) and optionally a better answer, with a copy of the image; returns its id."""
        from medvlab.store.feedback import FeedbackRecord
        from medvlab.vlm.prompting import detect_language

        record = FeedbackRecord(
            question=question,
            answer=strip_disclaimer(answer),
            rating=rating,
            better_answer=better_answer,
            language=detect_language(question),
            window=window,
            max_slices=max_slices,
            model_id=self.model_id,
            adapter=self.adapter,
        )
        return self.feedback.add(record, [Path(f) for f in image_files])

    def record_feedback_reference(
        self,
        ref: str,
        question: str,
        answer: str,
        rating: int,
        better_answer: str | None = None,
        window: str | None = None,
        max_slices: int | None = None,
    ) -> int:
        """:meth:`record_feedback` for an image named in a request (data URI or allowed local path).

        The image is decoded first, so nothing that is not an image is stored; a folder's files are each
        confined to the allowed folders (a link leading out is refused, not followed)."""
        args = (question, answer, rating, better_answer, window, max_slices)
        if ref.strip().startswith("data:"):
            data, name = self.decode_data_uri(ref)
            return self.record_feedback_uploads([(name, data)], *args)
        files = self.inputs.allowed_files(ref)
        self.load_image(files if len(files) > 1 else files[0])  # refuse non-images before storing
        return self.record_feedback(files, *args)

    def record_feedback_uploads(
        self,
        uploads: Sequence[tuple[str, bytes]],
        question: str,
        answer: str,
        rating: int,
        better_answer: str | None = None,
        window: str | None = None,
        max_slices: int | None = None,
    ) -> int:
        """:meth:`record_feedback` for uploaded files held in memory; their plain copies live only in a
        scratch folder for the duration of the call (the store keeps de-identified copies)."""
        from medvlab import scratch

        with scratch.temp_dir("fb-") as tmp:
            paths = []
            for i, (name, data) in enumerate(uploads):
                suffix = "".join(Path(name).suffixes[-2:]) if Path(name).suffix else ""
                path = tmp / f"upload-{i:04d}{suffix}"
                path.write_bytes(data)
                paths.append(path)
            if len(paths) == 1:
                self.load_image_bytes(uploads[0][1], uploads[0][0])  # refuse non-images before storing
            else:
                self.load_image(paths)
            return self.record_feedback(paths, question, answer, rating, better_answer, window, max_slices)

    def feedback_export(self, fmt: str) -> bytes:
        """The stored feedback as JSONL training data (``fmt`` = dpo or sft)."""
        from medvlab import scratch

        with scratch.temp_dir("export-") as tmp:
            path = tmp / "export.jsonl"
            self.feedback.export(path, fmt)
            return path.read_bytes()

    def set_adapter(self, path: str | None) -> str | None:
        """Apply a LoRA adapter to the loaded model, or return to the base model (None), without a restart."""
        backend = self.backend
        setter = getattr(backend, "set_adapter", None)
        if setter is None:
            raise RequestError("This backend cannot swap adapters.", "Restart with --adapter instead.")
        if path is not None:
            target = Path(path).expanduser().resolve()
            allowed = [Path(r).expanduser().resolve() for r in self.settings.allowed_paths]
            configured = Path(self.settings.adapter).resolve() if self.settings.adapter else None
            if target != configured and not any(target.is_relative_to(r) for r in allowed):
                raise InputRefusedError(
                    f"Loading an adapter from '{path}' is not allowed.",
                    "Put adapters under a folder named in MEDVLAB_ALLOWED_PATHS.",
                )
            path = str(target)
        setter(path)
        self.adapter = path
        return path

    def vqa_answer(self, image: str | Path, question: str, closed: bool, max_new_tokens: int = 64) -> str:
        """A short answer for evaluation: greedy, no disclaimer, yes/no requested for closed questions."""
        from medvlab.train.evaluate import CLOSED_HINT
        from medvlab.vlm.prompting import detect_language

        hint = CLOSED_HINT[detect_language(question)] if closed else ""
        messages = build_messages(
            [Turn("user", question + hint, [self.load_image(image)])], self.prompt_options()
        )
        options = GenerationOptions(max_new_tokens=max_new_tokens)
        return "".join(self.backend.stream(messages, options)).strip()

    # -- segmentation ---------------------------------------------------------------------------
    def predictor(self, model: str | None = None) -> Predictor:
        """The segmentation model (built-in name or checkpoint), loaded once and kept."""
        ref = model or self.settings.seg_model
        with self._seg_lock:
            if ref not in self._predictors:
                from medvlab.devices import resolve_device
                from medvlab.seg.infer import Predictor

                device = resolve_device(self.settings.device, dtype="float32").torch_device
                self._predictors[ref] = Predictor.load(ref, device)
            return self._predictors[ref]

    def segment(
        self, image: MedImage, model: str | None = None, progress: Progress | None = None
    ) -> Segmentation:
        """Segment a grayscale volume: labels on its grid and each structure's volume in mL.

        ``progress`` gets (window batches done, batches in all) while the network runs.
        """
        predictor = self.predictor(model)
        with self._seg_run_lock:  # one volume at a time: a 3-D network can use every core / the GPU
            return predictor.predict(image, progress)

    def segment_to_dicom_seg(self, ref: str, model: str | None = None) -> tuple[Segmentation, bytes]:
        """Segment the DICOM named in a request (data URI of a file, or an allowed local file/series
        folder) and return the DICOM SEG that references it."""
        from medvlab import scratch
        from medvlab.seg.outputs import write_dicom_seg

        ref = ref.strip()
        with scratch.temp_dir("seg-") as tmp:  # removed when the request ends, whatever happens
            source: Path | list[Path]
            if ref.startswith("data:") or is_remote(ref):
                data, name = self.decode_data_uri(ref) if ref.startswith("data:") else self.fetch_allowed(ref)
                source = tmp / ("source" + "".join(Path(name).suffixes[-2:]))
                source.write_bytes(data)
            else:
                files = self.inputs.allowed_files(ref)
                source = files if len(files) > 1 else files[0]
            image = self.load_image(source)
            seg = self.segment(image, model)
            out = Path(tmp) / "seg.dcm"
            write_dicom_seg(
                seg.labels, image, source, seg.spec, out, Path(model or self.settings.seg_model).stem
            )
            return seg, out.read_bytes()

    @staticmethod
    def mask_nifti(segmentation: Segmentation, image: MedImage) -> bytes:
        """The segmentation's labels as .nii.gz bytes on ``image``'s grid."""
        from medvlab import scratch
        from medvlab.seg.outputs import write_nifti

        with scratch.temp_dir("mask-") as tmp:
            return write_nifti(segmentation.labels, image, tmp / "mask.nii.gz").read_bytes()

    @staticmethod
    def overlay(
        image: MedImage, segmentation: Segmentation, index: int = 0, window: str | None = None
    ) -> np.ndarray:
        """One slice with the segmentation drawn over it, ``(rows, cols, 3)`` uint8."""
        from medvlab.seg.overlay import draw_overlay

        return draw_overlay(render_slice(image, index, window), segmentation.labels[index])

    # -- reports --------------------------------------------------------------------------------
    def report(
        self,
        image: MedImage,
        qa: Sequence[tuple[str, str]],
        *,
        window: str | None = None,
        slice_index: int | None = None,
        structured: dict[str, Any] | None = None,
        heatmaps: Sequence[tuple[Image.Image, str]] = (),
        citations: Sequence[Hit] = (),
        volumes_ml: dict[str, float] | None = None,
        segmentation: Segmentation | None = None,
        language: Language | None = None,
    ) -> bytes:
        """A PDF report of one image and its conversation.

        With ``segmentation``, the report also shows the mask on the slice where it is largest and lists
        the measured volumes (unless ``volumes_ml`` is given).
        """
        from medvlab.imaging.windows import to_pil
        from medvlab.reports.pdf import ReportContent, build_pdf
        from medvlab.vlm.prompting import detect_language

        index = image.n_slices // 2 if slice_index is None else slice_index
        lang = language or detect_language(" ".join(q for q, _ in qa))
        # the report prints the disclaimer itself; drop the copy each streamed answer ends with
        qa = [(q, strip_disclaimer(a)) for q, a in qa]
        picture = to_pil(self.preview(image, index, window))
        caption = f"{image.modality} · slice {index + 1}/{image.n_slices} · window {window or 'auto'}"
        pictures = [(picture, caption)]
        if segmentation is not None:
            volumes_ml = volumes_ml or segmentation.volumes_ml
            areas = (segmentation.labels > 0).sum(axis=(1, 2))
            best = int(areas.argmax())
            drawn = to_pil(self.overlay(image, segmentation, best, window))
            names = ", ".join(segmentation.names)
            pictures.append((drawn, f"segmentation ({names}) · slice {best + 1}/{image.n_slices}"))
        s = image.summary()
        content = ReportContent(
            model_id=self.model_id,
            language=lang,
            pictures=[*pictures, *heatmaps],
            qa=list(qa),
            structured=structured,
            citations=[h.citation() for h in citations],
            volumes_ml=volumes_ml,
            adapter=self.adapter,
            image_summary=f"{s['format']} {s['modality']} {'x'.join(map(str, s['shape']))}, "
            f"spacing {', '.join(f'{v:g}' for v in s['spacing_mm'])} mm",
        )
        return build_pdf(content)

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


def _before_question(turns: list[Turn], text: str) -> list[Turn]:
    """The turns with ``text`` (retrieved snippets, measurements) put before the last user question."""
    last = turns[-1]
    return [*turns[:-1], Turn("user", text + last.text, last.images)]


def _then(chunks: Iterator[str], tail: str) -> Iterator[str]:
    yield from chunks
    yield tail


def _display_size(picture: Image.Image, longest: int = 512) -> tuple[int, int]:
    """Heatmaps are drawn on an upscaled copy so the grid reads well in reports and the UI."""
    w, h = picture.size
    scale = longest / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))
