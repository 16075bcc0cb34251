"""What every command needs: the settings and, lazily, the database."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from lpzero_queue.config import Settings, load_settings, mask_url
from lpzero_queue.errors import StorageError
from lpzero_queue.storage import (
    Engine,
    Sessions,
    check_connection,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)

if TYPE_CHECKING:
    from lpzero_queue.execution.base import Executor
    from lpzero_queue.storage import Benchmark


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
    def sessions(self) -> Sessions:
        return session_factory(self.engine)

    def apply_torch_settings(self) -> None:
        """Apply the configured torch thread count to this process (0 leaves torch's default).

        Scoring does not depend on it: every executor scores with ``scoring_threads``.
        """
        if self.settings.torch_threads:
            import torch

            torch.set_num_threads(self.settings.torch_threads)

    def benchmark(self, name: str) -> Benchmark:
        """The stored benchmark ``name``; a shipped one not loaded yet is loaded first, with
        progress (a few seconds to minutes: every record's size is worked out)."""
        from lpzero_queue.benchmarks.records import SHIPPED
        from lpzero_queue.cli._progress import progress_bar
        from lpzero_queue.workflows.catalog import ensure_benchmark, is_stored

        if name not in SHIPPED or is_stored(self.sessions, name):
            return ensure_benchmark(self.sessions, name)
        with progress_bar(f"loading {name}") as advance:
            return ensure_benchmark(self.sessions, name, progress=advance)

    def executor(self) -> Executor:
        """The in-process executor on the embedded default; Celery when a broker is set.

        Both score with ``settings.scoring_threads`` torch threads per process (``torch_threads``,
        or 1 when 0) and record it with each evaluation.
        """
        if self.settings.broker_url:
            from lpzero_queue.execution.celery_executor import CeleryExecutor

            return CeleryExecutor(
                self.settings, self.sessions, say=lambda m: typer.echo(f"lpzq: {m}", err=True)
            )
        from lpzero_queue.execution.local import LocalExecutor

        return LocalExecutor(
            cache_bytes=int(self.settings.input_cache_gb * 2**30),
            spill_dir=self.settings.cache_dir / "inputs",
            processes=self.settings.effective_local_processes,
            torch_threads=self.settings.scoring_threads,
            device=self.settings.device,
        )

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
