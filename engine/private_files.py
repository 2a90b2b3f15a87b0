"""Files only their owner may read (private keys, trusted fingerprints), written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["write_private_file"]


def write_private_file(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one step, in a file created 0600 (never readable by others, even briefly).

    The bytes go to a new temporary file beside ``path`` (flushed to disk when
    ``durable``), which is then renamed over it: a reader sees the old file or
    the new one, never half of one.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
