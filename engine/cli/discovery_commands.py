"""Discovery on the command line: ``browse``, and the pieces of ``serve --advertise`` and ``sync --peer``.

``inventory-sync browse [--interface IP]... [--timeout S] [--json]`` prints the
peers advertised on the local network as they come, change and go (name, peer
ID, URLs, TLS and certificate fingerprint); our own database is never listed.
It exits 0 after ``--timeout`` seconds, 130 on Ctrl-C (SIGINT), 143 on SIGTERM.

For ``serve`` and ``sync``: :func:`add_advertise_options` and
:func:`advertising` advertise a running listener until the command ends;
:func:`add_peer_options` and :func:`following_peer` find a peer by its ID (or
name) and give a replicator what it needs to follow it when it moves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.cli.output import Output, UsageError
from engine.cli.store_commands import Subparsers
from engine.replication import event_loop
from engine.replication.discovery import (
    Peer,
    PeerAdded,
    PeerAdvertiser,
    PeerBrowser,
    PeerChanged,
    PeerEndpoint,
    PeerEvent,
    advertise_listener,
)
from engine.replication.discovery_records import default_instance_name
from engine.replication.errors import PeerNotFoundError
from engine.replication.listener import URLEndpointListener
from engine.userdata import database_exists, open_user_database

__all__ = [
    "FIND_TIMEOUT",
    "FollowedPeer",
    "add_advertise_options",
    "add_interface_option",
    "add_peer_options",
    "advertising",
    "browse",
    "following_peer",
    "interface_address",
    "register",
]

#: Seconds ``sync --peer`` looks for the peer before giving up (exit 1).
FIND_TIMEOUT = 10.0
_EXIT_ON_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def interface_address(text: str) -> str:
    """An interface's IP address, for argparse (``--interface``)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r} (give an address of this machine)") from None


def add_interface_option(parser: argparse.ArgumentParser) -> None:
    """``--interface IP`` (repeatable) into ``args.interfaces``: None means every interface."""
    parser.add_argument(
        "--interface",
        dest="interfaces",
        action="append",
        type=interface_address,
        metavar="IP",
        help="an address of this machine to use for discovery (repeatable; default: every interface)",
    )


def add_advertise_options(parser: argparse.ArgumentParser) -> None:
    """``--advertise`` and ``--interface`` for ``serve``."""
    parser.add_argument("--advertise", action="store_true", help="advertise the listener on the local network")
    add_interface_option(parser)


def add_peer_options(parser: argparse.ArgumentParser) -> None:
    """``--peer`` and ``--interface`` for ``sync``."""
    parser.add_argument("--peer", metavar="PEER", help="a peer ID or name that browse lists (instead of a URL)")
    add_interface_option(parser)


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``browse`` to ``commands``."""
    p = commands.add_parser("browse", parents=[common], help="list the peers on the local network as they come")
    add_interface_option(p)
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds (default: at Ctrl-C)")
    p.set_defaults(handler=cmd_browse)


def cmd_browse(args: argparse.Namespace, out: Output) -> int:
    """List peers until the timeout or a signal."""
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be a number of seconds above 0")
    return event_loop.run(browse(out, interfaces=args.interfaces, timeout=args.timeout, own_peer_id=_own_peer_id(args)))


def _own_peer_id(args: argparse.Namespace) -> str | None:
    """The user's peer ID, if the user has a database (browse creates none)."""
    if not database_exists(args.user, args.data_dir):
        return None
    with open_user_database(args.user, args.data_dir, seed=False) as db:
        return db.peer_id


async def browse(
    out: Output, *, interfaces: Sequence[str] | None, timeout: float | None, own_peer_id: str | None = None
) -> int:
    """Print peers as they come, change and go; return the exit code (0, or 130/143 after a signal)."""
    signalled: list[str] = []
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        signalled.append(sig.name)
        stop.set()

    _on_signals(on_signal)
    where = ", ".join(interfaces) if interfaces else "every interface"
    async with PeerBrowser(own_peer_id=own_peer_id, interfaces=interfaces) as browser:
        out.record({"event": "browsing", "interfaces": interfaces}, f"browsing on {where}")
        remove = browser.add_peer_listener(lambda event: _print_event(out, event))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
        finally:
            remove()
        count = len(browser.peers)
    reason = signalled[0] if signalled else "timeout"
    out.record({"event": "stopped", "reason": reason, "peers": count}, f"stopped ({reason}): {count} peer(s) seen now")
    return _EXIT_ON_SIGNAL.get(reason, 0)


def _on_signals(handler: Callable[[signal.Signals], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler, sig)


def _print_event(out: Output, event: PeerEvent) -> None:
    kind, word = (
        ("peer_added", "found")
        if isinstance(event, PeerAdded)
        else ("peer_changed", "changed")
        if isinstance(event, PeerChanged)
        else ("peer_removed", "gone")
    )
    out.result({"event": kind, **event.peer.to_json()}, f"{word}: {describe_peer(event.peer)}")


def describe_peer(peer: Peer) -> str:
    """One readable line: name, peer ID, URLs, TLS."""
    tls = f"TLS, SHA-256 {peer.fingerprint}" if peer.tls else "no TLS"
    return f"{peer.name!r} peer {peer.peer_id} {' '.join(peer.urls)} ({tls})"


# -- serve --advertise ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def advertising(
    listener: URLEndpointListener,
    peer_id: str,
    out: Output,
    *,
    user: str,
    interfaces: Sequence[str] | None = None,
    fingerprint: str | None = None,
) -> AsyncIterator[PeerAdvertiser]:
    """Advertise a started listener as ``"<user> on <machine>"`` while the block runs, then say goodbye.

    Prints ``{"event": "advertising", "name", "peer_id", "service"}`` once registered
    (about 1.2 s). ``peer_id`` is the database's (``Database.peer_id``);
    ``fingerprint`` the listener's TLS certificate SHA-256 (None without TLS).
    When the listener restarts on another port, call ``update(port=...)`` on
    the advertiser yielded.

    Raises:
        DiscoveryError: zeroconf could not register the advert (exit 1).
    """
    advertiser = await advertise_listener(
        listener, peer_id=peer_id, fingerprint=fingerprint, name=default_instance_name(user), interfaces=interfaces
    )
    try:
        out.record(
            {"event": "advertising", "name": advertiser.name, "peer_id": peer_id, "service": advertiser.service_name},
            f"advertising as {advertiser.name!r} (peer ID {peer_id})",
        )
        yield advertiser
    finally:
        await asyncio.shield(advertiser.stop())


# -- sync --peer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FollowedPeer:
    """A peer found by :func:`following_peer`, and the resolver a replicator follows it with."""

    peer: Peer
    endpoint: PeerEndpoint

    def replicator_options(self) -> dict[str, Any]:
        """``url``, ``remote_name`` (the peer ID: checkpoints survive a move) and ``endpoint``,
        for ``ReplicatorConfiguration(db, **options, ...)``."""
        return {"url": self.peer.url, "remote_name": self.peer.peer_id, "endpoint": self.endpoint}


@contextlib.asynccontextmanager
async def following_peer(
    query: str,
    out: Output,
    *,
    own_peer_id: str | None = None,
    interfaces: Sequence[str] | None = None,
    timeout: float = FIND_TIMEOUT,
) -> AsyncIterator[FollowedPeer]:
    """Find the peer ``query`` (its peer ID, or its name as browse shows it) and keep following it.

    The browser runs until the block ends, so the replicator built from
    :meth:`FollowedPeer.replicator_options` connects wherever the peer moves.
    Prints ``{"event": "peer_found", ...}`` (the fields of browse's records).

    Raises:
        PeerNotFoundError: no such peer advertised within ``timeout`` seconds (exit 1).
    """
    wanted = query.strip().lower()
    async with PeerBrowser(own_peer_id=own_peer_id, interfaces=interfaces) as browser:
        try:
            peer = await browser.wait_for(lambda p: wanted in (p.peer_id, p.name.lower()), timeout)
        except TimeoutError:
            raise PeerNotFoundError(
                f"no peer {query!r} on the network after {timeout:g} s (browse lists the peers)"
            ) from None
        out.record({"event": "peer_found", **peer.to_json()}, f"found {describe_peer(peer)}")
        yield FollowedPeer(peer, browser.endpoint(peer.peer_id))
