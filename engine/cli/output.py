"""Printing for the command line: text for people, JSON lines for scripts, errors on stderr.

Text goes to stdout; warnings and errors to stderr as one line each, prefixed
``inventory-sync:``. With ``--json`` every record is one JSON object per line
on stdout (the schema is in ``docs/cli.md``); with ``--quiet`` only errors
are printed.
"""

from __future__ import annotations

import sys
from typing import Any

from engine.json_codec import dumps

__all__ = ["Output", "UsageError"]


class UsageError(Exception):
    """The command as given cannot work (exit code 2); the message says why in one line."""


class Output:
    """Writes records to stdout and problems to stderr."""

    def __init__(self, *, json_lines: bool, quiet: bool = False) -> None:
        self.json_lines = json_lines
        self.quiet = quiet

    @property
    def terminal(self) -> bool:
        """Whether text goes to a terminal (progress bars then, plain lines when piped)."""
        return not self.json_lines and not self.quiet and sys.stderr.isatty() and sys.stdout.isatty()

    def record(self, data: dict[str, Any], text: str) -> None:
        """Print one record: ``data`` as a JSON line, or ``text`` for people."""
        if self.quiet:
            return
        print(dumps(data).decode() if self.json_lines else text, flush=True)

    def note(self, text: str) -> None:
        """Print a line for people only (nothing with ``--json`` or ``--quiet``)."""
        if not self.quiet and not self.json_lines:
            print(text, flush=True)

    def result(self, data: dict[str, Any], text: str) -> None:
        """Print what the command was asked for (a list, a document): shown even with ``--quiet``."""
        print(dumps(data).decode() if self.json_lines else text, flush=True)

    def raw(self, data: bytes) -> None:
        """Write bytes to stdout unchanged."""
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def warning(self, message: str) -> None:
        """Print one warning line on stderr (the command goes on)."""
        if not self.quiet:
            print(f"inventory-sync: warning: {_one_line(message)}", file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        """Print one error line on stderr."""
        print(f"inventory-sync: error: {_one_line(message)}", file=sys.stderr, flush=True)


def _one_line(message: str) -> str:
    stripped = message.strip()
    return stripped.splitlines()[0] if stripped else "error"
