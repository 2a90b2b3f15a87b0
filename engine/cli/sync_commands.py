"""Commands that talk to peers: ``serve`` (a listener) and ``sync`` (a replicator).

``sync`` checks its URL before anything connects (a URL it cannot use is a
usage error, exit 2) and exits 0 only when everything it promised happened:
a one-shot run interrupted by SIGINT or SIGTERM says so and exits 130 or 143;
a continuous run stopped by the user exits 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import getpass
import os
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.cli.databases import command_for, creating_database
from engine.cli.discovery_commands import add_advertise_options, add_peer_options, advertising, following_peer
from engine.cli.output import Output, UsageError
from engine.cli.reports import SUMMARY_INTERVAL, ServeReport, SyncReport
from engine.cli.security_commands import (
    add_listener_tls_options,
    add_validation_options,
    client_identity_from_args,
    listener_authenticator_from_args,
    listener_identity_from_args,
    trust_store_path,
    validation_from_args,
)
from engine.cli.store_commands import Subparsers
from engine.errors import EngineError, os_error_words
from engine.inventory_merge import ItemMergeResolver
from engine.replication import event_loop
from engine.replication.auth import (
    BasicAuthenticator,
)
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import (
    ReplicatorConfiguration,
    ReplicatorStatus,
    ReplicatorType,
    check_url,
)
from engine.replication.server_validation import ValidationMode
from engine.replication.trust_store import TrustStore, key_to_text, trust_key

__all__ = ["register"]

PASSWORD_ENV = "INVENTORY_SYNC_PASSWORD"  # noqa: S105  (a variable name, not a password)


def port_number(text: str) -> int:
    """A TCP port from 0 (any free port) to 65535, for argparse."""
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0 to 65535; 0 picks a free one)")
    return port


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``serve`` and ``sync`` to ``commands``."""
    p = commands.add_parser("serve", parents=[common], help="serve the database to replicators until stopped")
    p.add_argument("--host", default=None, help="address to listen on (default: every interface)")
    p.add_argument(
        "--port", type=port_number, default=0, help="port from 0 to 65535 (default 0: a free one; fix it for a shop)"
    )
    p.add_argument("--db-name", default="userdb", help="database name in the URL (default userdb)")
    p.add_argument(
        "--allow-list",
        type=Path,
        help="users allowed in: JSON lines or an array of {name, password} or {name, password_hash} "
        "(hash-password prints one)",
    )
    p.add_argument("--no-auth", action="store_true", help="let anyone in (only for trusted test networks)")
    p.add_argument("--read-only", action="store_true", help="refuse pushes; serve pulls")
    p.add_argument("--no-delta", action="store_true", help="never send or accept deltas")
    add_listener_tls_options(p)
    add_advertise_options(p)
    p.set_defaults(handler=cmd_serve)

    p = commands.add_parser("sync", parents=[common], help="replicate with a listener")
    p.add_argument("url", metavar="URL", nargs="?", help="wss://host:port/<db> (IPv6 hosts in brackets), or --peer")
    p.add_argument("--username", help="user name, if the listener asks for one")
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
    add_validation_options(p)
    add_peer_options(p)
    p.set_defaults(handler=cmd_sync)


def _on_signals(handler: object) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler, sig)  # type: ignore[arg-type]


# -- serve ------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    """Run a listener until SIGINT or SIGTERM."""
    authenticator = listener_authenticator_from_args(args)
    with creating_database(args, out, seed=True) as db:
        identity = listener_identity_from_args(args)
        config = ListenerConfiguration(
            db,
            port=args.port,
            host=args.host,
            database_name=args.db_name,
            authenticator=authenticator,
            read_only=args.read_only,
            enable_delta_sync=not args.no_delta,
            tls=identity,
        )
        return event_loop.run(_serve(URLEndpointListener(config), out, args))


async def _serve(listener: URLEndpointListener, out: Output, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    _on_signals(lambda _sig: stop.set())
    report = ServeReport(listener, out)
    try:
        await listener.start()
    except OSError as exc:  # the port is taken, the address is not this computer's...
        where = f"{args.host or 'every address'} port {args.port}"
        raise EngineError(f"cannot listen on {where}: {os_error_words(exc)}") from exc
    identity = listener.config.tls
    out.record(
        {"event": "listening", "urls": listener.urls, "tls": args.tls,
         "fingerprint": identity.fingerprint if identity is not None else None},
        "listening on " + ", ".join(listener.urls),
    )  # fmt: skip
    if identity is not None:  # without TLS the listener itself warns that passwords cross in clear
        out.note(f"TLS ({args.tls}), certificate SHA-256 fingerprint: {identity.fingerprint}")
    try:
        async with contextlib.AsyncExitStack() as advert:
            if args.advertise:
                await advert.enter_async_context(
                    advertising(
                        listener,
                        listener.config.database.peer_id,
                        out,
                        user=args.user,
                        interfaces=args.interfaces,
                        fingerprint=identity.fingerprint if identity is not None else None,
                    )
                )
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SUMMARY_INTERVAL)
                report.summarize()
    finally:
        await listener.stop()
    out.record({"event": "stopped"}, "stopped")
    return 0


# -- sync -------------------------------------------------------------------------------------


def _authenticator(args: argparse.Namespace) -> BasicAuthenticator | None:
    if args.username is None:
        if args.password is not None:
            raise UsageError("--password needs --username")
        return None
    if ":" in args.username or not args.username:
        raise UsageError("a user name must not be empty or contain ':'")
    if args.password is not None:
        password = str(args.password)
    elif PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.username}: ")
    else:
        raise UsageError(f"no password for {args.username}: use --password or ${PASSWORD_ENV}")
    return BasicAuthenticator(args.username, password)


def cmd_sync(args: argparse.Namespace, out: Output) -> int:
    """Replicate once (or continuously) and report."""
    if (args.url is None) == (args.peer is None):
        raise UsageError("sync needs a URL or --peer PEER (one of them)")
    if args.url is not None:
        # before anything opens or connects (exit 2); a wss:// URL always gets a validation mode (tofu by default)
        check_url(args.url, tls=args.url.lower().startswith("wss:"))
        validation_from_args(args, args.url)
    client_identity = client_identity_from_args(args)
    if args.max_attempts is not None and args.max_attempts < 0:
        raise UsageError("--max-attempts must be 0 (no limit) or more")
    authenticator = _authenticator(args)
    with creating_database(args, out, seed=False) as db:
        kind = ReplicatorType.PUSH if args.push else ReplicatorType.PULL if args.pull else ReplicatorType.PUSH_AND_PULL
        attempts = args.max_attempts if args.max_attempts is not None else (0 if args.continuous else 1)

        def replicator_for(url: str, **options: Any) -> Replicator:
            validation = validation_from_args(args, url)
            config = ReplicatorConfiguration(
                db,
                url,
                type=kind,
                continuous=args.continuous,
                authenticator=authenticator,
                conflict_resolver=ItemMergeResolver(),
                tls=validation,
                client_identity=client_identity,
                max_attempts=attempts,
                **options,
            )
            replicator = Replicator(config)
            if validation is not None and validation.mode is ValidationMode.TOFU:
                peer_id = options.get("remote_name") if "endpoint" in options else None
                _announce_first_use(replicator, out, TrustStore(trust_store_path(args)), url, peer_id)
            return replicator

        async def run() -> int:
            if args.url is not None:
                return await _sync(replicator_for(args.url), out, args)
            async with following_peer(args.peer, out, own_peer_id=db.peer_id, interfaces=args.interfaces) as target:
                options = target.replicator_options()
                url = options.pop("url")
                check_url(url, tls=url.lower().startswith("wss:"))
                return await _sync(replicator_for(url, **options), out, args)

        return event_loop.run(run())


def _announce_first_use(
    replicator: Replicator, out: Output, store: TrustStore, url: str, peer_id: str | None = None
) -> None:
    """Say so when the listener's certificate is trusted for the first time (trust on first use)."""
    parts = urlsplit(url)
    key = trust_key(parts.hostname or "", parts.port or 443, peer_id)
    if store.get(key) is not None:
        return

    def check(_status: ReplicatorStatus) -> None:
        peer = store.get(key)
        if peer is not None:
            remove()
            out.record(
                {"event": "trusted_on_first_use", "peer": key_to_text(peer.key), "fingerprint": peer.fingerprint},
                f"trusting {key_to_text(peer.key)} on first use: SHA-256 {peer.fingerprint} "
                "(compare it with what `inventory-sync --user <its user> identity show` prints on the listener's"
                " machine)",
            )

    remove = replicator.add_change_listener(check)


async def _sync(replicator: Replicator, out: Output, args: argparse.Namespace) -> int:
    continuous = args.continuous
    interrupted: list[str] = []
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not interrupted:
            interrupted.append(sig.name)
        stop.set()

    _on_signals(on_signal)
    report = SyncReport(replicator, out, continuous=continuous, command=functools.partial(command_for, args))
    replicator.start()
    stopped = asyncio.create_task(replicator.wait_stopped())
    signalled = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, signalled], return_when=asyncio.FIRST_COMPLETED)
    if signalled.done() and not stopped.done():
        await replicator.stop()  # saves the checkpoint reached: the next sync goes on from there
    else:
        interrupted.clear()  # it had finished before the signal was handled
    stopped.cancel()
    signalled.cancel()
    return report.finish(interrupted=interrupted[0] if interrupted else None)
