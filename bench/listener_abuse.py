"""Listener under abuse: connections held at the cap, what idle connections cost, syncs meanwhile, accept errors.

The listener runs in a child process with the usual desktop open-file limit
(1,024, ``--nofile``) and serves ``--docs`` documents; this process is the
clients. Printed figures:

1. A sync alone: a one-shot pull of every document into a new database
   (median of ``--runs``).
2. ``--open`` idle WebSocket clients (authenticated, answering pings): the
   listener's RSS growth per connection, and a sync while they are held.
3. ``--idle`` idle TCP connections that never send a byte (a slowloris without
   credentials), from 64 loopback addresses: connections held at the cap,
   replaced and refused, RSS growth per held connection, and a sync meanwhile.
4. An EMFILE spell: every descriptor of the listener process taken, clients
   waiting, for ``--seconds``: log lines a second, log bytes a second, CPU,
   for this listener and for asyncio's own accept path (a plain
   ``websockets.serve``, as the listener was before); then a sync once the
   descriptors are back.

    .venv/bin/python bench/listener_abuse.py [--docs 500] [--open 200] [--idle 1100] [--runs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.typing import Subprotocol

from engine.database import Database
from engine.replication import event_loop
from engine.replication.auth import BasicAuthenticator, PasswordAuthenticator
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ReplicatorConfiguration, ReplicatorType

USER, PASSWORD = "bob", "secret"
CREDENTIALS = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

# -- the listener's process -------------------------------------------------------------------


class _Counting(logging.Handler):
    """Counts records and the bytes a plain log file would get (message and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.records = 0
        self.bytes = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        self.bytes += len(self.format(record)) + 1


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _serve(path: str, plain_websockets: bool) -> None:
    counting = _Counting()
    logging.basicConfig(level=logging.WARNING, stream=io.StringIO())  # what the CLI shows by default
    logging.getLogger().addHandler(counting)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    with Database(path, durable=False) as db:
        listener = URLEndpointListener(
            ListenerConfiguration(
                db,
                host="127.0.0.1",
                database_name="shop",
                authenticator=PasswordAuthenticator.from_users({USER: PASSWORD}),
            )
        )

        async def handler(ws: ServerConnection) -> None:
            await ws.wait_closed()

        server = None
        if plain_websockets:
            server = await ws_serve(handler, "127.0.0.1", 0)
            _say(port=next(iter(server.sockets)).getsockname()[1])
        else:
            await listener.start()
            _say(port=listener.port)
        taken: list[int] = []
        while command := (await commands.readline()).decode().split():
            if command[0] == "rss":
                _say(rss_kib=_rss_kib())
            elif command[0] == "counts":
                counts = listener.connection_counts
                _say(
                    held=counts.held,
                    refused=counts.refused,
                    replaced=counts.replaced,
                    limit=counts.limit,
                    logged=counting.records,
                )
            elif command[0] == "fill":
                while True:
                    try:
                        taken.append(os.open(os.devnull, os.O_RDONLY))
                    except OSError:
                        break
                _say(filled=len(taken))
            elif command[0] == "free":
                for fd in taken:
                    os.close(fd)
                _say(freed=len(taken))
                taken = []
            elif command[0] == "measure":
                records, written, cpu, wall = counting.records, counting.bytes, time.process_time(), time.monotonic()
                await asyncio.sleep(float(command[1]))
                wall = time.monotonic() - wall
                _say(
                    records=(counting.records - records) / wall,
                    bytes=(counting.bytes - written) / wall,
                    cpu=(time.process_time() - cpu) / wall,
                )
        if server is not None:
            server.close()
            await server.wait_closed()
        await listener.stop()


# -- the clients (this process) --------------------------------------------------------------------


class Child:
    """The listener's process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    @classmethod
    async def start(cls, db: Path, nofile: int, *, plain_websockets: bool = False) -> Child:
        args = [sys.executable, __file__, "--serve", str(db), "--nofile", str(nofile)]
        process = await asyncio.create_subprocess_exec(
            *args, *(["--plain-websockets"] if plain_websockets else []),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        child = cls(process, 0)
        child.port = (await child.read())["port"]
        return child

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 120)
        return dict(json.loads(line))

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        return await self.read()

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/shop"


async def sync_time(url: str, root: Path, docs: int) -> float:
    """Seconds for a one-shot pull of every document into a new database, at the first attempt."""
    with Database(Path(tempfile.mkdtemp(dir=root)) / "client", durable=False) as db:
        replicator = Replicator(
            ReplicatorConfiguration(
                db, url, type=ReplicatorType.PULL, authenticator=BasicAuthenticator(USER, PASSWORD), max_attempts=1
            )
        )
        started = time.perf_counter()
        replicator.start()
        status = await replicator.wait_stopped()
        elapsed = time.perf_counter() - started
        if status.error is not None or len(db.doc_ids()) != docs:
            raise SystemExit(f"sync failed: {status.error}, {len(db.doc_ids())} documents")
    return elapsed


async def median_sync(url: str, root: Path, docs: int, runs: int) -> float:
    return statistics.median([await sync_time(url, root, docs) for _ in range(runs)])


def source_addresses(count: int) -> list[str]:
    """Loopback addresses to connect from (127.0.0.2 on), or only 127.0.0.1 where the system has no others."""
    try:
        with socket.create_connection(("127.0.0.1", 9), timeout=0.1, source_address=("127.0.0.2", 0)):
            pass
    except ConnectionRefusedError:
        return [f"127.0.0.{2 + i}" for i in range(count)]
    except OSError:
        pass
    return ["127.0.0.1"]


async def open_websockets(url: str, count: int, sources: list[str]) -> list[ClientConnection]:
    return [
        await ws_connect(
            url.replace("/shop", "/shop/_blipsync"),
            subprotocols=[Subprotocol("BLIP_3+CBMobile_3")],
            additional_headers=CREDENTIALS,
            local_addr=(sources[i % len(sources)], 0),
        )
        for i in range(count)
    ]


async def main(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))  # the clients' side needs many
    root = Path(tempfile.mkdtemp(prefix="listener-abuse-"))
    with Database(root / "shop", durable=False) as db, db.batch() as batch:
        for i in range(args.docs):
            batch.save(f"item{i}", {"name": f"item {i}", "qty": i, "note": "x" * 200})
    print(f"listener: open-file limit {args.nofile}, {args.docs} documents; {args.runs} runs per sync figure")

    child = await Child.start(root / "shop", args.nofile)
    limit = (await child.ask("counts"))["limit"]
    print(f"connection cap in force: {limit}")
    await sync_time(child.url, root, args.docs)  # warm
    alone = await median_sync(child.url, root, args.docs, args.runs)
    print(f"1. sync alone: {alone * 1000:.0f} ms")

    sources = source_addresses(64)
    rss = (await child.ask("rss"))["rss_kib"]
    idle = await open_websockets(child.url, args.open, sources)
    grown = (await child.ask("rss"))["rss_kib"] - rss
    during = await median_sync(child.url, root, args.docs, args.runs)
    print(
        f"2. {args.open} idle WebSocket clients: {grown / args.open:.1f} KiB of RSS each; "
        f"sync meanwhile {during * 1000:.0f} ms"
    )
    await asyncio.gather(*(ws.close() for ws in idle))
    await child.stop()

    child = await Child.start(root / "shop", args.nofile)
    rss = (await child.ask("rss"))["rss_kib"]
    started = time.perf_counter()
    silent = [
        await asyncio.open_connection("127.0.0.1", child.port, local_addr=(sources[i % len(sources)], 0))
        for i in range(args.idle)
    ]
    opened = time.perf_counter() - started
    counts = await child.ask("counts")
    grown = (await child.ask("rss"))["rss_kib"] - rss
    during = await median_sync(child.url, root, args.docs, args.runs)
    print(
        f"3. {args.idle} idle TCP connections from {len(sources)} addresses (opened in {opened:.1f} s): "
        f"{counts['held']} held, {counts['replaced']} replaced, {counts['refused']} refused, "
        f"{counts['logged']} log line(s); "
        f"{grown / max(counts['held'], 1):.1f} KiB of RSS per held connection; sync meanwhile {during * 1000:.0f} ms"
    )
    for _reader, writer in silent:
        writer.close()
    await child.stop()

    for plain in (True, False):
        child = await Child.start(root / "shop", 256, plain_websockets=plain)
        filled = (await child.ask("fill"))["filled"]
        waiting = [await asyncio.open_connection("127.0.0.1", child.port) for _ in range(20)]
        windows = [await child.ask(f"measure {args.seconds}") for _ in range(2)]
        name = "asyncio's accept path (before)" if plain else "this listener"
        line = (
            f"4. EMFILE spell, {name}: {filled} descriptors taken, 20 clients waiting; "
            + ", then ".join(
                f"{w['records']:.1f} log lines/s ({w['bytes'] / 1024:.1f} KiB/s), CPU {w['cpu']:.1%}" for w in windows
            )
            + f" (two windows of {args.seconds:.0f} s)"
        )
        if not plain:
            await child.ask("free")
            line += f"; sync once freed {await sync_time(child.url, root, args.docs) * 1000:.0f} ms"
        print(line)
        for _reader, writer in waiting:
            writer.close()
        await child.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--open", type=int, default=200, help="idle WebSocket clients (below the cap)")
    parser.add_argument("--idle", type=int, default=1100, help="idle TCP connections")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--nofile", type=int, default=1024, help="the listener's open-file limit")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--plain-websockets", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        _unused, hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (arguments.nofile, hard_limit))
        event_loop.run(_serve(arguments.serve, arguments.plain_websockets))
    else:
        event_loop.run(main(arguments))
