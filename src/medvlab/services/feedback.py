"""Clinician feedback in the lab: a rating (and a better answer) stored with a de-identified copy of the
image, from files, from a request's reference, or from uploads held in memory; exported as training data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medvlab import scratch
from medvlab.services.inputs import write_neutral
from medvlab.vlm.prompting import strip_disclaimer

if TYPE_CHECKING:
    from medvlab.services.lab import Lab
    from medvlab.store.feedback import FeedbackStore


def open_store(url: str | None, data_dir: Path) -> FeedbackStore:
    from medvlab.store.feedback import FeedbackStore

    return FeedbackStore(url, data_dir / "images") if url else FeedbackStore.at(data_dir)


def record(
    lab: Lab,
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

    entry = FeedbackRecord(
        question=question,
        answer=strip_disclaimer(answer),
        rating=rating,
        better_answer=better_answer,
        language=detect_language(question),
        window=window,
        max_slices=max_slices,
        model_id=lab.model_id,
        adapter=lab.adapter,
    )
    return lab.feedback.add(entry, [Path(f) for f in image_files])


def record_reference(
    lab: Lab,
    ref: str,
    question: str,
    answer: str,
    rating: int,
    better_answer: str | None = None,
    window: str | None = None,
    max_slices: int | None = None,
) -> int:
    """:func:`record` for an image named in a request (data URI or allowed local path).

    The image is decoded first, so nothing that is not an image is stored; a folder's files are each
    confined to the allowed folders (a link leading out is refused, not followed)."""
    args = (question, answer, rating, better_answer, window, max_slices)
    if ref.strip().startswith("data:"):
        data, name = lab.inputs.decode_data_uri(ref)
        return record_uploads(lab, [(name, data)], *args)
    files = lab.inputs.allowed_files(ref)
    lab.inputs.load(files if len(files) > 1 else files[0])  # refuse non-images before storing
    return record(lab, files, *args)


def record_uploads(
    lab: Lab,
    uploads: Sequence[tuple[str, bytes]],
    question: str,
    answer: str,
    rating: int,
    better_answer: str | None = None,
    window: str | None = None,
    max_slices: int | None = None,
) -> int:
    """:func:`record` for uploaded files held in memory: their plain copies live, under neutral names,
    only in a scratch folder for the duration of the call (the store keeps de-identified copies)."""
    with scratch.temp_dir("fb-") as tmp:
        paths = write_neutral(uploads, tmp)
        if len(uploads) == 1:
            lab.inputs.load_bytes(uploads[0][1], uploads[0][0])  # refuse non-images before storing
        else:
            lab.inputs.load(paths)
        return record(lab, paths, question, answer, rating, better_answer, window, max_slices)


def export(store: FeedbackStore, fmt: str) -> bytes:
    """The stored feedback as JSONL training data (``fmt`` = dpo or sft)."""
    with scratch.temp_dir("export-") as tmp:
        path = tmp / "export.jsonl"
        store.export(path, fmt)
        return path.read_bytes()
