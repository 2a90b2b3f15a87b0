"""Printing for the command line: text for people, JSON lines for scripts."""

from __future__ import annotations

import sys
from typing import Any

from engine.json_codec import dumps

__all__ = ["Output"]


class Output:
    """Writes records to stdout and errors to stderr."""

    def __init__(self, *, json_lines: bool) -> None:
        self.json_lines = json_lines

    def record(self, data: dict[str, Any], text: str) -> None:
        """Print one record: ``data`` as a JSON line, or ``text`` for people."""
        line = dumps(data).decode() if self.json_lines else text
        print(line, flush=True)

    def raw(self, data: bytes) -> None:
        """Write bytes to stdout unchanged."""
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    def warning(self, message: str) -> None:
        """Print one warning line on stderr (the command goes on)."""
        print(f"inventory-sync: warning: {message}", file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        """Print one error line on stderr."""
        first_line = message.strip().splitlines()[0] if message.strip() else "error"
        print(f"inventory-sync: error: {first_line}", file=sys.stderr, flush=True)
