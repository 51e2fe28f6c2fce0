"""Clinician feedback on answers: ratings and better answers, kept with the image and the prompt.

Images are de-identified before they are stored (DICOM: PS3.15 basic profile; photos: pixels only; NIfTI:
free-text header fields blanked), in a folder named by the SHA-256 of the original files, under neutral
file names (``image-0001.dcm``), so exports never depend on temporary uploads nor name the patient.
Every write is one transaction; SQLite runs in WAL mode with a busy timeout, so concurrent requests
serialize instead of failing, and a crash mid-write leaves the last committed state intact.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, Text, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medvlab.errors import RequestError
from medvlab.imaging.deid import deidentify_bytes
from medvlab.store.db import make_engine

logger = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
STORED_PREFIX = "image-"  # stored files are image-0001.dcm, image-0002.dcm...: never the uploaded names


class Base(DeclarativeBase):
    pass


class FeedbackRow(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime, default=lambda: dt.datetime.now(dt.timezone.utc)
    )
    model_id: Mapped[str] = mapped_column(String(512))
    adapter: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    image_ref: Mapped[str] = mapped_column(String(2048))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    rating: Mapped[int] = mapped_column(Integer)
    better_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    language: Mapped[str] = mapped_column(String(8))
    window: Mapped[str | None] = mapped_column(String(64), nullable=True)
    max_slices: Mapped[int | None] = mapped_column(Integer, nullable=True)


@dataclass(frozen=True)
class FeedbackRecord:
    """One rating of one answer. ``rating`` is +1 (good) or -1 (bad)."""

    question: str
    answer: str
    rating: int
    better_answer: str | None = None
    language: str = "en"
    window: str | None = None
    max_slices: int | None = None
    model_id: str = ""
    adapter: str | None = None


class FeedbackStore:
    def __init__(self, url: str, image_dir: Path) -> None:
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self.image_dir = image_dir

    @classmethod
    def at(cls, folder: Path) -> FeedbackStore:
        folder.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{folder / 'medvlab.sqlite'}", folder / "images")

    def keep_image(self, files: Sequence[Path]) -> tuple[str, str]:
        """Store de-identified copies of the image file(s); returns (reference path, sha256). Idempotent.

        The folder is named by the SHA-256 of the uploaded files, the files in it ``image-0001.dcm``...
        (never the uploaded names, which can hold the patient's name). Only de-identified bytes are
        written, first to a private temporary folder inside the store that is renamed into place, or
        removed if anything fails. Links are refused, not followed.
        """
        if not files:
            raise RequestError(
                "Feedback needs the image it is about.", "Load an image before rating the answer."
            )
        ordered = sorted(Path(f) for f in files)
        digest = hashlib.sha256()
        for f in ordered:
            digest.update(f.name.encode())
            digest.update(_read_regular_file(f))
        sha = digest.hexdigest()
        folder = self.image_dir / sha
        if not folder.exists():
            self._write_deidentified(ordered, folder, sha)
        if len(ordered) > 1:
            return str(folder), sha
        stored = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        if not stored[0].name.startswith(STORED_PREFIX):
            logger.warning("feedback image %s was stored before neutral file names", sha[:12])
        return str(stored[0]), sha

    def _write_deidentified(self, files: Sequence[Path], folder: Path, sha: str) -> None:
        tmp = self.image_dir / f".{sha}.{uuid.uuid4().hex}.tmp"  # private to this writer
        tmp.mkdir(parents=True)
        try:
            stems: dict[str, str] = {}  # uploaded stem -> neutral stem (keeps .hdr/.img pairs paired)
            for f in files:  # DICOM: the same seed for every file, so one study stays one study
                clean = deidentify_bytes(_read_regular_file(f), f.name, seed=sha)
                stem = stems.setdefault(_stem(f.name), f"{STORED_PREFIX}{len(stems) + 1:04d}")
                target = tmp / f"{stem}{clean.suffix}"
                if target.exists():  # two uploads whose names differ only in the suffix: a.jpg, a.jpeg
                    stem = stems[f"/{f.name}"] = f"{STORED_PREFIX}{len(stems) + 1:04d}"
                    target = tmp / f"{stem}{clean.suffix}"
                target.write_bytes(clean.data)
            try:
                tmp.rename(folder)  # atomic: a crash never leaves a half-copied image folder
            except OSError:
                if not folder.exists():
                    raise
                # another request stored the same image first; its copy is the same
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename; removed otherwise

    def add(self, record: FeedbackRecord, files: Sequence[Path]) -> int:
        if record.rating not in (-1, 1):
            raise RequestError(f"rating must be +1 or -1, got {record.rating}.", "Send 1 (good) or -1 (bad).")
        if not record.question.strip() or not record.answer.strip():
            raise RequestError("Feedback needs the question and the answer.", "Send both.")
        ref, sha = self.keep_image([Path(f) for f in files])
        row = FeedbackRow(
            model_id=record.model_id,
            adapter=record.adapter,
            image_ref=ref,
            image_sha256=sha,
            question=record.question,
            answer=record.answer,
            rating=record.rating,
            better_answer=(record.better_answer or "").strip() or None,
            language=record.language,
            window=record.window,
            max_slices=record.max_slices,
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return int(row.id)

    def rows(self) -> list[FeedbackRow]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(FeedbackRow).order_by(FeedbackRow.id)).all())

    def count(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(FeedbackRow)) or 0)

    # -- exports --------------------------------------------------------------------------------
    def dpo_pairs(self) -> Iterator[dict[str, object]]:
        """Preference pairs: a better answer beats the rated one; a liked answer beats a disliked one
        to the same question on the same image."""
        rows = self.rows()
        for r in rows:
            if r.better_answer and r.better_answer != r.answer:
                yield _pair(r, r.better_answer, r.answer)
        groups: dict[tuple[str, str], list[FeedbackRow]] = {}
        for r in rows:
            groups.setdefault((r.image_sha256, r.question.strip()), []).append(r)
        for group in groups.values():
            good = [r for r in group if r.rating > 0]
            bad = [r for r in group if r.rating < 0]
            for g in good:
                for b in bad:
                    if g.answer != b.answer:
                        yield _pair(g, g.answer, b.answer)

    def sft_records(self) -> Iterator[dict[str, object]]:
        """Conversations worth imitating: liked answers and better answers."""
        for r in self.rows():
            target = r.better_answer or (r.answer if r.rating > 0 else None)
            if target:
                yield {
                    "messages": [
                        {"role": "user", "content": "<image>" + r.question},
                        {"role": "assistant", "content": target},
                    ],
                    "images": [r.image_ref],
                }

    def export(self, path: Path, fmt: str) -> int:
        rows = list(self.dpo_pairs() if fmt == "dpo" else self.sft_records())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return len(rows)


def _stem(name: str) -> str:
    lower = name.lower()
    return name[: -len(".nii.gz")] if lower.endswith(".nii.gz") else name.rsplit(".", 1)[0]


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, refusing links (checked, then opened with O_NOFOLLOW) and non-files."""
    problem = f"'{path.name}' is a symbolic link; medvlab stores only the image file itself."
    fix = "Send the file itself, not a link to it."
    # the last component only: a linked parent folder (/tmp -> /private/tmp on macOS) is harmless
    if path.is_symlink() or path.resolve() != path.parent.resolve() / path.name:
        raise RequestError(problem, fix)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)  # NONBLOCK: a FIFO cannot hang us
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a link after the check
            raise RequestError(problem, fix) from exc
        raise RequestError(f"'{path.name}' could not be read ({exc.strerror}).", "Send it again.") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise RequestError(f"'{path.name}' is not a regular file.", "Send the image file itself.")
        return fh.read()


def _pair(row: FeedbackRow, chosen: str, rejected: str) -> dict[str, object]:
    return {
        "prompt": "<image>" + row.question,
        "chosen": chosen,
        "rejected": rejected,
        "images": [row.image_ref],
    }
