"""Errors that the CLI reports as one line and a non-zero exit, without a traceback."""


class LpzqError(Exception):
    """An error a user can fix; the message says what is wrong and what is valid."""


class ConfigError(LpzqError):
    """The configuration (environment or TOML file) is invalid."""


class StorageError(LpzqError):
    """The database cannot be reached or is not in the expected state."""


class NotFoundError(LpzqError):
    """A named object (benchmark, proxy, run) does not exist."""
