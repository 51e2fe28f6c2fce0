"""Persistence of report snippets (SQLAlchemy; SQLite by default, any database URL works).

Each snippet is keyed by a hash of its text (whitespace collapsed), so adding the same report twice keeps
one copy and gives back the id it already has; ids are never reused after a removal. A generation counter,
bumped in the same transaction as every change, tells the search indexes when to rebuild. Sentence
vectors are kept per text hash and model, so a new process does not embed the whole base again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import (
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medvlab.errors import NotFoundError

logger = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class SnippetRow(Base):
    __tablename__ = "kb_snippets"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012  (SQLAlchemy's form; ids never reused)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(String(512))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime, default=lambda: dt.datetime.now(dt.timezone.utc))
    content_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)


class MetaRow(Base):
    __tablename__ = "kb_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class VectorRow(Base):
    __tablename__ = "kb_vectors"

    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


def content_hash(text_: str) -> str:
    """SHA-256 of the text with runs of whitespace collapsed (so re-wrapped copies match)."""
    return hashlib.sha256(" ".join(text_.split()).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Snippet:
    """One prior-report passage. ``id`` is None until stored."""

    title: str
    text: str
    source: str = ""
    language: str = "en"
    id: int | None = None
    added_at: dt.datetime | None = None

    @property
    def key(self) -> str:
        """The content hash that identifies this text across databases."""
        return content_hash(self.text)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "source": self.source,
            "language": self.language,
            "key": self.key[:16],
            "added_at": self.added_at.isoformat() if self.added_at else None,
        }


def _snippet(r: SnippetRow) -> Snippet:
    return Snippet(r.title, r.text, r.source, r.language, r.id, r.added_at)


class SnippetStore:
    """Adds, lists and removes snippets in one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(engine)
        self._migrate()

    def _migrate(self) -> None:
        """Give a knowledge base written before content hashes existed its hashes (dropping duplicates)."""
        columns = {c["name"] for c in inspect(self.engine).get_columns("kb_snippets")}
        if "content_hash" in columns:
            return
        with self.engine.begin() as conn:
            conn.execute(text("ALTER TABLE kb_snippets ADD COLUMN content_hash VARCHAR(64)"))
            seen: set[str] = set()
            dropped = 0
            for row_id, body in conn.execute(text("SELECT id, text FROM kb_snippets ORDER BY id")).all():
                key = content_hash(body)
                if key in seen:
                    conn.execute(text("DELETE FROM kb_snippets WHERE id = :i"), {"i": row_id})
                    dropped += 1
                    continue
                seen.add(key)
                conn.execute(
                    text("UPDATE kb_snippets SET content_hash = :h WHERE id = :i"), {"h": key, "i": row_id}
                )
            conn.execute(
                text(
                    "CREATE UNIQUE INDEX IF NOT EXISTS ix_kb_snippets_content_hash "
                    "ON kb_snippets (content_hash)"
                )
            )
        logger.info("knowledge base upgraded: content hashes added, %d duplicate(s) removed", dropped)

    @staticmethod
    def _bump(session: Session) -> None:
        changed = session.execute(
            update(MetaRow).where(MetaRow.key == "generation").values(value=MetaRow.value + 1)
        ).rowcount  # type: ignore[attr-defined]
        if not changed:
            session.add(MetaRow(key="generation", value=1))

    def add_checked(self, snippets: Sequence[Snippet]) -> tuple[list[int], int]:
        """Store the snippets whose text is new; -> (an id per input snippet, how many were new)."""
        for attempt in range(3):
            try:
                return self._add(snippets)
            except IntegrityError:  # another writer stored the same text in between: look again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _add(self, snippets: Sequence[Snippet]) -> tuple[list[int], int]:
        keys = [s.key for s in snippets]
        with Session(self.engine) as session, session.begin():
            known: dict[str, int] = {}
            unique = sorted(set(keys))
            for i in range(0, len(unique), 500):
                rows = session.execute(
                    select(SnippetRow.content_hash, SnippetRow.id).where(
                        SnippetRow.content_hash.in_(unique[i : i + 500])
                    )
                ).all()
                known.update({str(h): int(n) for h, n in rows})
            new: dict[str, SnippetRow] = {}
            for s, key in zip(snippets, keys, strict=True):
                if key not in known and key not in new:
                    new[key] = SnippetRow(
                        source=s.source, title=s.title, text=s.text, language=s.language, content_hash=key
                    )
            if new:
                session.add_all(new.values())
                session.flush()
                self._bump(session)
            ids = {**known, **{k: r.id for k, r in new.items()}}
            return [ids[k] for k in keys], len(new)

    def add(self, snippets: Sequence[Snippet]) -> list[int]:
        """Store the snippets (texts already stored are not stored again); -> an id per snippet."""
        return self.add_checked(snippets)[0]

    def all(self) -> list[Snippet]:
        with Session(self.engine) as session:
            return [_snippet(r) for r in session.scalars(select(SnippetRow).order_by(SnippetRow.id))]

    def page(self, offset: int = 0, limit: int = 20, query: str = "") -> tuple[list[Snippet], int]:
        """Snippets ``offset`` .. ``offset + limit`` (oldest first), optionally only those whose title,
        text or source contains ``query``; -> (page, how many match in all)."""
        where = []
        if query.strip():
            like = f"%{query.strip()}%"
            where.append(
                SnippetRow.title.ilike(like) | SnippetRow.text.ilike(like) | SnippetRow.source.ilike(like)
            )
        with Session(self.engine) as session:
            total = int(session.scalar(select(func.count()).select_from(SnippetRow).where(*where)) or 0)
            rows = session.scalars(
                select(SnippetRow).where(*where).order_by(SnippetRow.id).offset(offset).limit(limit)
            )
            return [_snippet(r) for r in rows], total

    def get(self, snippet_id: int) -> Snippet:
        with Session(self.engine) as session:
            row = session.get(SnippetRow, snippet_id)
            if row is None:
                raise self._missing(snippet_id)
            return _snippet(row)

    @staticmethod
    def _missing(snippet_id: int) -> NotFoundError:
        return NotFoundError(
            f"The knowledge base has no snippet {snippet_id}.",
            "List the snippets (medvlab kb list, GET /v1/kb/snippets) to see their ids.",
        )

    def remove(self, snippet_id: int) -> Snippet:
        """Delete one snippet (and its cached vector); -> what was removed. NotFoundError if unknown."""
        with Session(self.engine) as session, session.begin():
            row = session.get(SnippetRow, snippet_id)
            if row is None:
                raise self._missing(snippet_id)
            gone = _snippet(row)
            session.execute(delete(VectorRow).where(VectorRow.content_hash == row.content_hash))
            session.delete(row)
            self._bump(session)
            return gone

    def clear(self) -> int:
        """Delete every snippet and cached vector; -> how many snippets there were."""
        with Session(self.engine) as session, session.begin():
            n = session.execute(delete(SnippetRow)).rowcount  # type: ignore[attr-defined]
            session.execute(delete(VectorRow))
            self._bump(session)
            return int(n or 0)

    def count(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(SnippetRow)) or 0)

    def version(self) -> tuple[int, int]:
        """(generation, count): changes whenever snippets are added or removed, so indexes rebuild."""
        with Session(self.engine) as session:
            gen = session.scalar(select(MetaRow.value).where(MetaRow.key == "generation"))
            n = session.scalar(select(func.count()).select_from(SnippetRow))
            return int(gen or 0), int(n or 0)

    def vectors(self, keys: Sequence[str], model: str) -> dict[str, np.ndarray]:
        """Cached sentence vectors of these text hashes under ``model`` (missing ones are left out)."""
        out: dict[str, np.ndarray] = {}
        with Session(self.engine) as session:
            for i in range(0, len(keys), 500):
                rows = session.execute(
                    select(VectorRow.content_hash, VectorRow.vector).where(
                        VectorRow.model == model, VectorRow.content_hash.in_(list(keys[i : i + 500]))
                    )
                ).all()
                out.update({str(h): np.frombuffer(v, dtype=np.float32) for h, v in rows})
        return out

    def save_vectors(self, vectors: dict[str, np.ndarray], model: str) -> None:
        with Session(self.engine) as session, session.begin():
            for key, vec in vectors.items():
                session.merge(
                    VectorRow(content_hash=key, model=model, vector=np.asarray(vec, np.float32).tobytes())
                )
