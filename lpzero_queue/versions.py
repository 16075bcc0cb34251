"""Code and library versions, recorded with every run and shown by ``lpzq --version``."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

from lpzero_queue import __version__

LIBRARIES = ("torch", "transformers", "numpy", "scipy", "sqlalchemy", "alembic", "celery", "redis")


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit (and ``-dirty``) when run from a checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'-dirty' if dirty else ''}"


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that can change a result."""
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
