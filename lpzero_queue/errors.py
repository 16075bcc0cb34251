"""Errors that the CLI reports as one line and a non-zero exit, without a traceback."""


class LpzqError(Exception):
    """An error a user can fix; the message says what is wrong and what is valid."""


class ConfigError(LpzqError):
    """The configuration (environment or TOML file) is invalid."""


class StorageError(LpzqError):
    """The database cannot be reached or is not in the expected state."""


class NotFoundError(LpzqError):
    """A named object (benchmark, proxy, run) does not exist."""


CLIP_CHARS = 80  # characters of user text echoed in a one-line message


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """``text`` quoted for a one-line message; past ``limit`` characters, its start and length.

    A 100 KB expression pasted by mistake must not be echoed whole in an error line.
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
