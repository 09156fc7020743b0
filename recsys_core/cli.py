"""The command-line conventions of both CLIs: a bad argument or a user error is
one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from recsys_core.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a UserError (one line, status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def run(command: Callable[[], None], on_interrupt: Callable[[KeyboardInterrupt], int]) -> int:
    """Run ``command``: 0 on success, 2 with one line for a UserError, and what
    ``on_interrupt`` says (after printing its own line) for Ctrl-C or SIGTERM."""
    try:
        command()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return on_interrupt(exc)
    return 0
