"""What every command needs: the settings and, lazily, the database."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lpzero_queue.config import Settings, load_settings, mask_url
from lpzero_queue.errors import StorageError
from lpzero_queue.storage import (
    check_connection,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)


@dataclass
class Runtime:
    """Settings plus a lazily created engine; one per CLI invocation."""

    settings: Settings = field(default_factory=load_settings)

    @functools.cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.effective_database_url)
        check_connection(engine)
        return engine

    @functools.cached_property
    def sessions(self) -> sessionmaker[Session]:
        return sessionmaker(self.engine, expire_on_commit=False)

    @property
    def url_for_display(self) -> str:
        return mask_url(self.settings.effective_database_url)

    def require_schema(self, *, create: bool = False, say: object = print) -> None:
        """Make sure the schema is at head.

        Args:
            create: migrate an empty or older database up to head (saying so in one line)
                instead of refusing.
            say: where the one-line notice goes.

        Raises:
            StorageError: the schema is missing or old and ``create`` is False.
        """
        current = current_revision(self.engine)
        head = head_revision()
        if current == head:
            return
        if not create:
            state = "has no schema" if current is None else f"is at revision {current}, not {head}"
            raise StorageError(f"database {self.url_for_display} {state}; run: lpzq db upgrade")
        upgrade(self.engine)
        what = (
            "created the schema" if current is None else f"migrated the schema {current} -> {head}"
        )
        say(f"lpzq: {what} in {self.url_for_display}")  # type: ignore[operator]
