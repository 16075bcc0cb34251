"""Session types for code outside ``storage/``, which imports nothing from SQLAlchemy itself."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.storage._engine import Engine, Sessions

__all__ = ["Engine", "Session", "Sessions", "session_factory"]


def session_factory(engine: Engine) -> Sessions:
    """Sessions on ``engine`` whose rows stay readable after their transaction commits."""
    return sessionmaker(engine, expire_on_commit=False)
