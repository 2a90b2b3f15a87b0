"""Commands that talk to peers: ``serve`` (a listener) and ``sync`` (a replicator)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import sys
from pathlib import Path
from typing import Any

from engine.cli.output import Output
from engine.cli.store_commands import Subparsers, open_database
from engine.errors import EngineError
from engine.inventory_merge import ItemMergeResolver
from engine.replication.auth import BasicAuthenticator, PasswordAuthenticator, load_allow_list
from engine.replication.listener import ConnectionEvent, ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import (
    DocumentReplication,
    ReplicatedDocument,
    ReplicatorConfiguration,
    ReplicatorStatus,
    ReplicatorType,
)

__all__ = ["register"]

PASSWORD_ENV = "INVENTORY_SYNC_PASSWORD"  # noqa: S105  (a variable name, not a password)


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``serve`` and ``sync`` to ``commands``."""
    p = commands.add_parser("serve", parents=[common], help="serve the database to replicators until stopped")
    p.add_argument("--host", default=None, help="address to listen on (default: every interface)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    p.add_argument("--db-name", default="userdb", help="database name in the URL (default userdb)")
    p.add_argument("--allow-list", type=Path, help="users allowed in: JSON lines or array of {name, password}")
    p.add_argument("--no-auth", action="store_true", help="let anyone in (only for trusted test networks)")
    p.add_argument("--read-only", action="store_true", help="refuse pushes; serve pulls")
    p.add_argument("--no-delta", action="store_true", help="never send or accept deltas")
    p.set_defaults(handler=cmd_serve)

    p = commands.add_parser("sync", parents=[common], help="replicate with a listener")
    p.add_argument("url", metavar="URL", help="ws[s]://host:port/<db>")
    p.add_argument("--username", required=True)
    p.add_argument("--password", help=f"(default: ${PASSWORD_ENV}, or asked for)")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--push", action="store_true", help="only send local changes")
    direction.add_argument("--pull", action="store_true", help="only fetch the peer's changes")
    p.add_argument("--continuous", action="store_true", help="keep replicating until interrupted")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        metavar="N",
        help="connection attempts before giving up (default: 1 for one-shot, unlimited when continuous)",
    )
    p.set_defaults(handler=cmd_sync)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    """Run a listener until SIGINT or SIGTERM."""
    if args.allow_list is None and not args.no_auth:
        raise EngineError("serve needs --allow-list FILE (or --no-auth to let anyone in)")
    authenticator = None
    if args.allow_list is not None:
        users = load_allow_list(args.allow_list)
        authenticator = PasswordAuthenticator.from_users((u.name, u.password) for u in users)
    with open_database(args) as db:
        config = ListenerConfiguration(
            db,
            port=args.port,
            host=args.host,
            database_name=args.db_name,
            authenticator=authenticator,
            read_only=args.read_only,
            enable_delta_sync=not args.no_delta,
        )
        return asyncio.run(_serve(URLEndpointListener(config), out))


async def _serve(listener: URLEndpointListener, out: Output) -> int:
    stop = asyncio.Event()
    _stop_on_signals(stop)

    def announce(event: ConnectionEvent) -> None:
        kind = "connected" if event.connected else "disconnected"
        data: dict[str, Any] = {"event": kind, "peer": event.peer, "user": event.user}
        text = f"{kind} {event.peer}" + (f" as {event.user}" if event.user and event.connected else "")
        if not event.connected:
            data["code"] = event.close_code
            text += f" ({event.close_code})"
        out.record(data, text)

    listener.add_connection_listener(announce)
    await listener.start()
    out.record({"event": "listening", "urls": listener.urls}, "listening " + " ".join(listener.urls))
    await stop.wait()
    await listener.stop()
    out.record({"event": "stopped"}, "stopped")
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        return getpass.getpass(f"password for {args.username}: ")
    raise EngineError(f"no password: use --password or ${PASSWORD_ENV}")


def cmd_sync(args: argparse.Namespace, out: Output) -> int:
    """Replicate once (or continuously) and report."""
    kind = ReplicatorType.PUSH if args.push else ReplicatorType.PULL if args.pull else ReplicatorType.PUSH_AND_PULL
    password = _password(args)
    with open_database(args, seed=False) as db:
        config = ReplicatorConfiguration(
            db,
            args.url,
            type=kind,
            continuous=args.continuous,
            authenticator=BasicAuthenticator(args.username, password),
            conflict_resolver=ItemMergeResolver(),
            max_attempts=args.max_attempts if args.max_attempts is not None else (0 if args.continuous else 1),
        )
        return asyncio.run(_sync(Replicator(config), out))


async def _sync(replicator: Replicator, out: Output) -> int:
    stop = asyncio.Event()
    _stop_on_signals(stop)

    def show(status: ReplicatorStatus) -> None:
        if out.json_lines:
            out.record(
                {
                    "event": "status",
                    "activity": status.activity.name.lower(),
                    "completed": status.progress.completed,
                    "total": status.progress.total,
                    "error": str(status.error) if status.error else None,
                },
                "",
            )

    # the last outcome of each document in each direction: a failure a later retry mended is no failure
    outcomes: dict[tuple[bool, str], ReplicatedDocument] = {}

    def note(event: DocumentReplication) -> None:
        for document in event.documents:
            outcomes[(event.push, document.id)] = document

    replicator.add_change_listener(show)
    replicator.add_document_listener(note)
    replicator.start()
    stopped = asyncio.create_task(replicator.wait_stopped())
    interrupted = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, interrupted], return_when=asyncio.FIRST_COMPLETED)
    if interrupted.done():
        await replicator.stop()
    stopped.cancel()
    interrupted.cancel()
    status = replicator.status
    if status.error is not None and not interrupted.done():
        out.error(str(status.error))
        return 1
    failed = [(push, doc) for (push, _), doc in outcomes.items() if doc.error is not None]
    for push, doc in failed:
        direction = "push" if push else "pull"
        data = {"event": "document_failed", "direction": direction, "id": doc.id, "rev": doc.rev_id}
        out.record({**data, "error": str(doc.error)}, f"not synced ({direction}): {doc.id}: {doc.error}")
    counts = {"pushed": replicator.pushed, "pulled": replicator.pulled}
    if failed:
        out.record(
            {"event": "incomplete", **counts, "failed": len(failed)},
            f"incomplete: pushed {replicator.pushed}, pulled {replicator.pulled} documents; {len(failed)} not synced",
        )
        return 1
    out.record({"event": "done", **counts}, f"done: pushed {replicator.pushed}, pulled {replicator.pulled} documents")
    return 0
