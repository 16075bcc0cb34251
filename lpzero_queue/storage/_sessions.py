"""Session types for code outside ``storage/``, which imports nothing from SQLAlchemy itself."""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Engine", "Session", "SessionFactory", "session_factory"]

# What the CLI and coordinators hold: a factory of sessions bound to one engine.
SessionFactory: TypeAlias = sessionmaker[Session]


def session_factory(engine: Engine) -> SessionFactory:
    """Sessions on ``engine`` whose rows stay readable after their transaction commits."""
    return sessionmaker(engine, expire_on_commit=False)
