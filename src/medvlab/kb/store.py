"""Persistence of report snippets (SQLAlchemy; SQLite by default, any database URL works)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import DateTime, Integer, String, Text, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class SnippetRow(Base):
    __tablename__ = "kb_snippets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(String(512))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime, default=lambda: dt.datetime.now(dt.timezone.utc))


@dataclass(frozen=True)
class Snippet:
    """One prior-report passage. ``id`` is None until stored."""

    title: str
    text: str
    source: str = ""
    language: str = "en"
    id: int | None = None


class SnippetStore:
    """Adds and reads snippets in one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(engine)

    def add(self, snippets: Sequence[Snippet]) -> list[int]:
        rows = [
            SnippetRow(source=s.source, title=s.title, text=s.text, language=s.language) for s in snippets
        ]
        with Session(self.engine) as session, session.begin():
            session.add_all(rows)
            session.flush()
            return [r.id for r in rows]

    def all(self) -> list[Snippet]:
        with Session(self.engine) as session:
            rows = session.scalars(select(SnippetRow).order_by(SnippetRow.id)).all()
            return [Snippet(r.title, r.text, r.source, r.language, r.id) for r in rows]

    def count(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(SnippetRow)) or 0)

    def version(self) -> tuple[int, int]:
        """(count, max id): changes whenever snippets are added, so indexes know to rebuild."""
        with Session(self.engine) as session:
            n, top = session.execute(select(func.count(), func.max(SnippetRow.id))).one()
            return int(n or 0), int(top or 0)
