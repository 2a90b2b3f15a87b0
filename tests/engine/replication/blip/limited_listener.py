"""A listener in a process of its own, with a low open-file limit, driven over stdin (see test_acceptor.py).

``python -m tests.engine.replication.blip.limited_listener DB_DIR NOFILE`` serves DB_DIR as ``shop``
on 127.0.0.1 (users ``bob``/``secret``) with its open-file soft limit lowered to NOFILE, then prints
one JSON object per line: ``{"port": p}`` once, ``{"log": level, "logger": name, "message": m}`` for
every record at WARNING or above (and the accept path's INFO lines), and one answer per command:

- ``fill``: take every free descriptor, as a busy process would (``{"filled": n}``);
- ``free``: give them back (``{"freed": n}``);
- ``measure S``: the log records and the CPU seconds of the next S seconds (``{"records": n, "cpu": s}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import time

from engine.database import Database
from engine.replication.auth import PasswordAuthenticator
from engine.replication.listener import ListenerConfiguration, URLEndpointListener


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        _say(log=record.levelname, logger=record.name, message=record.getMessage())


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _take_descriptors() -> list[int]:
    taken: list[int] = []
    while True:
        try:
            taken.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return taken


async def main(path: str) -> None:
    lines = _Lines()
    logging.getLogger().addHandler(lines)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("engine.replication.blip.acceptor").setLevel(logging.INFO)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    with Database(path, durable=False) as db:
        listener = URLEndpointListener(
            ListenerConfiguration(
                db,
                host="127.0.0.1",
                database_name="shop",
                authenticator=PasswordAuthenticator.from_users({"bob": "secret"}),
            )
        )
        await listener.start()
        _say(port=listener.port)
        taken: list[int] = []
        while command := (await commands.readline()).decode().split():
            if command[0] == "fill":
                taken += _take_descriptors()
                _say(filled=len(taken))
            elif command[0] == "free":
                for fd in taken:
                    os.close(fd)
                _say(freed=len(taken))
                taken = []
            elif command[0] == "measure":
                records, cpu = lines.count, time.process_time()
                await asyncio.sleep(float(command[1]))
                _say(records=lines.count - records, cpu=time.process_time() - cpu)
        await listener.stop()


if __name__ == "__main__":
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), hard))
    asyncio.run(main(sys.argv[1]))
