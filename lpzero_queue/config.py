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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    # Threads per torch process; 0 lets torch decide.
    torch_threads: int = Field(default=0, ge=0)
    # RAM for cached proxy inputs (split over local processes); evictions spill to disk.
    input_cache_gb: float = Field(default=6.0, gt=0)
    # Scoring processes of the embedded default, one torch thread each; 0 = one per core (max 4).
    local_processes: int = Field(default=0, ge=0)

    @field_validator("database_url", "broker_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

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
            "torch_threads": self.torch_threads,
            "input_cache_gb": self.input_cache_gb,
            "local_processes": self.effective_local_processes,
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
        field = ".".join(str(p) for p in first["loc"]) or "configuration"
        valid = ", ".join(sorted(Settings.model_fields))
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"unknown setting '{field}'; valid settings: {valid}") from exc
        raise ConfigError(f"invalid setting '{field}': {first['msg']}") from exc
