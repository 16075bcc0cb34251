"""Alembic environment of lpzero_queue: the engine comes from the caller (lpzq db ...)."""

from __future__ import annotations

from alembic import context

from lpzero_queue.storage._models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from lpzero_queue.config import load_settings
        from lpzero_queue.storage._engine import make_engine

        engine = make_engine(load_settings().effective_database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rewrites the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; use lpzq db upgrade")
run_migrations_online()
