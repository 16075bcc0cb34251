"""The lpzq command line: the coordinator of lpzero_queue.

Every command prints errors as one line on stderr and exits non-zero; no traceback reaches a user
for a mistake they can fix (bad input, unreachable database, unknown names).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from lpzero_queue.cli._app import app
from lpzero_queue.errors import LpzqError, one_line

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``lpzq`` console script."""
    try:
        rc = app(
            args=list(argv) if argv is not None else None, prog_name="lpzq", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        print("lpzq: aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print("lpzq: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except LpzqError as exc:
        print(f"lpzq: error: {one_line(str(exc))}", file=sys.stderr)
        raise SystemExit(1) from None
    if isinstance(rc, int) and rc != 0:
        raise SystemExit(rc)
