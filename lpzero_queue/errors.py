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


MAX_LINE_CHARS = 1000  # an error line longer than this is cut in the middle


def one_line(message: str, limit: int = MAX_LINE_CHARS) -> str:
    """``message`` on one line, cut in the middle past ``limit`` characters.

    The net under :func:`clip`: the start (what is wrong) and the end (what is valid) stay.
    """
    message = " ".join(message.split())
    if len(message) <= limit:
        return message
    head, tail = message[: limit * 2 // 3], message[-limit // 3 :]
    return f"{head} ...({len(message) - len(head) - len(tail):,} characters cut)... {tail}"


def brief(value: object, limit: int = CLIP_CHARS) -> str:
    """``repr(value)`` for a one-line message; past ``limit`` characters, its start and length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"
