"""The lab's records (feedback, preferences) via SQLAlchemy: SQLite by default, any database URL works."""

from medvlab.store.feedback import FeedbackRecord, FeedbackStore

__all__ = ["FeedbackRecord", "FeedbackStore"]
