"""Typed configuration from environment variables and an optional TOML file.

Precedence (highest first): ``LPZQ_*`` environment variables, the TOML file named by
``LPZQ_CONFIG`` (or ``config.toml`` in the per-user config directory when it exists), defaults.
With nothing set, the *embedded default* applies: a SQLite database in the per-user data directory
and in-process execution (no broker).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lpzero_queue.errors import ConfigError

APP_NAME = "lpzero_queue"
CONFIG_ENV = "LPZQ_CONFIG"

Device = Literal["auto", "cpu", "cuda"]


def default_data_dir() -> Path:
    """The per-user data directory (SQLite database, checkpoints)."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_cache_dir() -> Path:
    """The per-user cache directory (spilled proxy inputs)."""
    return Path(platformdirs.user_cache_dir(APP_NAME))


def default_config_file() -> Path:
    """Where an optional TOML configuration file is looked for when LPZQ_CONFIG is unset."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


class Settings(BaseModel):
    """The effective configuration of lpzq; immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None means the embedded default: <data_dir>/lpzq.sqlite3.
    database_url: str | None = None
    # None means in-process execution; a redis:// URL sends work to Celery workers.
    broker_url: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    # "auto" picks CUDA when a GPU is visible to the worker, else CPU.
    device: Device = "auto"
    # Intra-op torch threads of every scoring process (in-process children, worker children);
    # 0 means 1. Float reductions depend on it, so it is recorded with each result.
    torch_threads: int = Field(default=0, ge=0)
    # RAM for cached proxy inputs (split over local processes); evictions spill to disk.
    input_cache_gb: float = Field(default=6.0, gt=0)
    # Scoring processes of the embedded default, one torch thread each; 0 = one per core (max 4).
    local_processes: int = Field(default=0, ge=0)

    # A search run's lease: its coordinator renews it every third of this while it works; a
    # run whose coordinator stopped renewing it this long shows as stale, and
    # ``lpzq search resume`` may take it over.
    run_lease_s: float = Field(default=60.0, gt=0)

    # Distributed execution (coordinator and workers must agree on these).
    # A scoring unit past the soft limit stops with its proxies recorded as ``timeout``.
    celery_soft_time_limit_s: int = Field(default=1800, gt=0)
    # A unit still running at the hard limit has its child killed: an infrastructure failure.
    celery_hard_time_limit_s: int = Field(default=2100, gt=0)
    # Redis redelivers unacknowledged messages after this; 0 = hard limit + 900 s. It must
    # exceed the hard limit, or a long unit runs twice.
    celery_visibility_timeout_s: int = Field(default=0, ge=0)
    # A unit's lease lasts this long unless its worker renews it (a dead worker's unit is
    # re-sent after it); the coordinator's value travels with each task.
    celery_lease_s: float = Field(default=60.0, gt=0)
    # Seconds between lease renewals; 0 = a third of the lease. Must be below the lease.
    celery_heartbeat_s: float = Field(default=0.0, ge=0)
    # Leases per unit and coordinator request before it is a failed unit (infrastructure
    # failures only; a rerun or resume gives a failed unit this many attempts again).
    celery_max_attempts: int = Field(default=3, ge=1)
    # Prefix of every Redis key: isolates deployments sharing one Redis.
    celery_key_prefix: str = ""
    # The coordinator waits out a broker (Redis) outage this long, saying so every 30 s, then
    # stops with an error (the work done is stored; resume it). Messages the broker lost are
    # sent again when it is back.
    celery_broker_wait_s: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("database_url", "broker_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _consistent_celery_limits(self) -> Settings:
        soft, hard = self.celery_soft_time_limit_s, self.celery_hard_time_limit_s
        if soft >= hard:
            raise ValueError(
                f"celery_soft_time_limit_s ({soft}) must be below celery_hard_time_limit_s ({hard})"
            )
        if self.celery_visibility_timeout_s and self.celery_visibility_timeout_s <= hard:
            raise ValueError(
                f"celery_visibility_timeout_s ({self.celery_visibility_timeout_s}) must exceed "
                f"celery_hard_time_limit_s ({hard}), or long units run twice; 0 derives it"
            )
        if self.celery_heartbeat_s and self.celery_heartbeat_s >= self.celery_lease_s:
            raise ValueError(
                f"celery_heartbeat_s ({self.celery_heartbeat_s:g}) must be below "
                f"celery_lease_s ({self.celery_lease_s:g}); 0 means a third of the lease"
            )
        return self

    @property
    def scoring_threads(self) -> int:
        """Intra-op torch threads of each scoring process: ``torch_threads``, or 1 when 0."""
        return self.torch_threads or 1

    @property
    def effective_visibility_timeout_s(self) -> int:
        """The Redis visibility timeout: the setting, or the hard time limit plus 900 s."""
        return self.celery_visibility_timeout_s or self.celery_hard_time_limit_s + 900

    @property
    def effective_heartbeat_s(self) -> float:
        """Seconds between lease renewals: the setting, or a third of the lease."""
        return self.celery_heartbeat_s or self.celery_lease_s / 3

    @property
    def effective_database_url(self) -> str:
        """The database URL in force, resolving the embedded SQLite default."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'lpzq.sqlite3'}"

    @property
    def effective_local_processes(self) -> int:
        """Scoring processes used in-process: the setting, or one per core up to 4."""
        return self.local_processes or max(1, min(4, os.cpu_count() or 1))

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: work runs in this process."""
        return self.broker_url is None

    def masked(self) -> dict[str, Any]:
        """The configuration as a plain dict with passwords masked, for display."""
        return {
            "database_url": mask_url(self.effective_database_url),
            "broker_url": mask_url(self.broker_url) if self.broker_url else None,
            "execution": "in-process" if self.embedded else "celery",
            "data_dir": str(self.data_dir),
            "cache_dir": str(self.cache_dir),
            "device": self.device,
            "torch_threads": self.scoring_threads,
            "input_cache_gb": self.input_cache_gb,
            "local_processes": self.effective_local_processes,
            "run_lease_s": self.run_lease_s,
            "celery_soft_time_limit_s": self.celery_soft_time_limit_s,
            "celery_hard_time_limit_s": self.celery_hard_time_limit_s,
            "celery_visibility_timeout_s": self.effective_visibility_timeout_s,
            "celery_lease_s": self.celery_lease_s,
            "celery_heartbeat_s": self.effective_heartbeat_s,
            "celery_max_attempts": self.celery_max_attempts,
            "celery_key_prefix": self.celery_key_prefix,
            "celery_broker_wait_s": self.celery_broker_wait_s,
        }


def mask_url(url: str) -> str:
    """Replace the password of a URL by ``***``; other parts are kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    # A [lpzq] table is accepted as well as top-level keys.
    section = data.get("lpzq", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [lpzq] must be a table")
    return section


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build the settings from the environment and the optional TOML file.

    Args:
        env: the environment to read (defaults to ``os.environ``); tests pass their own.

    Raises:
        ConfigError: an unreadable file, an unknown key or a value of the wrong type, in one line.
    """
    env = dict(os.environ if env is None else env)
    file_values: dict[str, Any] = {}
    explicit = env.get(CONFIG_ENV)
    path = Path(explicit) if explicit else default_config_file()
    if explicit or path.exists():
        file_values = _read_toml(path)
    env_values = {
        key[len("LPZQ_") :].lower(): value
        for key, value in env.items()
        if key.startswith("LPZQ_") and key != CONFIG_ENV
    }
    merged = {**file_values, **env_values}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        valid = ", ".join(sorted(Settings.model_fields))
        if not field:  # a check across settings: its message names them
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"inconsistent settings: {message}") from exc
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown setting '{field}'; valid settings: {valid}") from exc
        raise ConfigError(f"invalid setting '{field}': {first['msg']}") from exc
