"""Shared fixtures: storage suppliers for SQLite and the real PostgreSQL, CLI runner."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from lpzero_queue.storage import make_engine, upgrade

# The PostgreSQL server the tests use (trust auth on this machine and CI). Not an LPZQ_ variable:
# lpzq rejects unknown LPZQ_* settings.
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _pg_admin() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_available() -> bool:
    """The suite needs PostgreSQL; .ci/run starts it. A missing server fails loudly."""
    engine = _pg_admin()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    finally:
        engine.dispose()
    return True


def new_postgres_database() -> str:
    """Create an empty database with a unique name; returns its URL."""
    name = f"lpzq_t_{uuid.uuid4().hex[:12]}"
    engine = _pg_admin()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Drop a database made by new_postgres_database, disconnecting its sessions."""
    name = make_url(url).database
    engine = _pg_admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each supported backend, isolated per test and removed afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lpzq.sqlite3'}"
        return
    request.getfixturevalue("pg_available")
    url = new_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database of each backend."""
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def migrated_engine(engine: Engine) -> Engine:
    """An engine whose database Alembic has migrated to head."""
    upgrade(engine)
    return engine


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment for running lpzq with an isolated embedded default (no user files touched)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LPZQ_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["LPZQ_TORCH_THREADS"] = "1"
    return env


def run_lpzq(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real lpzq command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lpzero_queue", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


# A progress report of a long command when stderr is not a terminal (cli/_progress.py).
PROGRESS_LINE = re.compile(r"lpzq: .+: \d+/\d+ after \d+ s\b.*")


def message_lines(stderr: str) -> list[str]:
    """The lines of a command's stderr other than its progress reports."""
    return [line for line in stderr.strip().splitlines() if not PROGRESS_LINE.fullmatch(line)]
