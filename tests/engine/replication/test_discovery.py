"""Discovery over mDNS on loopback only (``interfaces=["127.0.0.1"]``): advertise, browse, resolve, follow.

Every advert has a fresh name and peer ID and tests look only at their own, so
that runs side by side on one machine (loopback is shared) do not mix up.
Adverts of foreign or broken peers are registered without probing
(python-zeroconf's ``cooperating_responders``), which takes no time; ours
probe first, about 1.2 s each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from engine.replication import tuning
from engine.replication.active_session import replication_checkpoint_id
from engine.replication.discovery import (
    Peer,
    PeerAdded,
    PeerAdvertiser,
    PeerBrowser,
    PeerChanged,
    PeerEndpoint,
    PeerEvent,
    PeerEvents,
    PeerRemoved,
    advertise_listener,
    open_zeroconf,
)
from engine.replication.discovery_records import SERVICE_TYPE, Advert, encode_txt
from engine.replication.errors import PeerNotFoundError
from engine.replication.replicator_types import ActivityLevel
from tests.conftest import TIME_UNIT, wait_until
from tests.engine.replication.conftest import Peers, wait_for_activity

pytestmark = [pytest.mark.asyncio, pytest.mark.both_loops]  # the engine runs on either (tests/conftest.py)

LOOPBACK = ["127.0.0.1"]
WAIT = 10 * TIME_UNIT
FP = ":".join(["AB"] * 32)


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def new_id() -> str:
    return str(uuid.uuid4())


@pytest_asyncio.fixture
async def zc() -> AsyncIterator[AsyncZeroconf]:
    instance = open_zeroconf(LOOPBACK)
    yield instance
    await instance.async_close()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[PeerBrowser]:
    async with PeerBrowser(interfaces=LOOPBACK) as running:
        yield running


def debug_log(caplog: pytest.LogCaptureFixture) -> None:
    """Capture discovery's debug log in this test (call it in the test: each phase has its own handler)."""
    caplog.set_level(logging.DEBUG, logger="engine.replication.discovery")


async def next_event(events: PeerEvents, peer_id: str, kind: type[PeerEvent]) -> PeerEvent:
    """The next event of ``kind`` about ``peer_id`` (others are passed over)."""

    async def find() -> PeerEvent:
        async for event in events:
            if event.peer.peer_id == peer_id and isinstance(event, kind):
                return event
        raise AssertionError("the browser stopped")

    return await asyncio.wait_for(find(), WAIT)


def txt_bytes(entries: dict[str, str | bytes]) -> bytes:
    """A TXT record's wire form, byte for byte."""
    encoded = [
        key.encode() + b"=" + (value.encode() if isinstance(value, str) else value) for key, value in entries.items()
    ]
    return b"".join(bytes([len(entry)]) + entry for entry in encoded)


async def raw_advert(
    zc: AsyncZeroconf,
    name: str,
    properties: dict[str, str] | bytes,
    *,
    port: int = 4984,
    addresses: tuple[str, ...] = ("127.0.0.1",),
) -> AsyncServiceInfo:
    """An advert as any peer might send it, registered at once (no probing)."""
    info = AsyncServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        port=port,
        properties=properties,
        parsed_addresses=list(addresses),
        server=f"{uuid.uuid4().hex}.local.",
    )
    await zc.async_register_service(info, cooperating_responders=True, strict=False)
    return info


# -- advertise, browse, resolve, remove ---------------------------------------------------------


async def test_advertise_browse_update_and_remove(browser: PeerBrowser) -> None:
    events = browser.events()
    peer_id, name = new_id(), unique("bob on box")
    advertiser = PeerAdvertiser(
        peer_id=peer_id, database_name="userdb", port=4984, fingerprint="ab" * 32, name=name, interfaces=LOOPBACK
    )
    async with advertiser:
        assert advertiser.running and advertiser.name == name
        added = await next_event(events, peer_id, PeerAdded)
        assert added.peer == Peer(
            peer_id, name, "userdb", FP, tuning.SUBPROTOCOLS, 4984, ("127.0.0.1",), ("wss://127.0.0.1:4984/userdb",)
        )
        await advertiser.update(port=4985)  # the listener restarted on another port: same entry, new URL
        moved = await next_event(events, peer_id, PeerChanged)
        assert isinstance(moved, PeerChanged) and moved.previous == added.peer
        assert moved.peer.url == "wss://127.0.0.1:4985/userdb"
        await advertiser.update(fingerprint=None)  # TLS turned off
        plain = await next_event(events, peer_id, PeerChanged)
        assert plain.peer.url == "ws://127.0.0.1:4985/userdb" and not plain.peer.tls
        assert browser.peers[peer_id] == plain.peer
    assert not advertiser.running
    removed = await next_event(events, peer_id, PeerRemoved)  # the goodbye
    assert removed.peer == plain.peer and browser.peer(peer_id) is None


async def test_a_taken_name_is_renamed_and_a_peer_is_one_entry(browser: PeerBrowser) -> None:
    """Two listeners of one database under one name: the second is renamed; one peer, both URLs."""
    events = browser.events()
    peer_id, name = new_id(), unique("alice on box")
    options: dict[str, object] = {"peer_id": peer_id, "database_name": "userdb", "name": name, "interfaces": LOOPBACK}
    async with PeerAdvertiser(port=5001, **options) as first:  # type: ignore[arg-type]
        await next_event(events, peer_id, PeerAdded)
        async with PeerAdvertiser(port=5002, **options) as second:  # type: ignore[arg-type]
            assert (first.name, second.name) == (name, f"{name}-2")
            both = await next_event(events, peer_id, PeerChanged)
            assert both.peer.name == f"{name}-2"  # the latest advert leads
            assert both.peer.urls == ("ws://127.0.0.1:5002/userdb", "ws://127.0.0.1:5001/userdb")
            assert [p.peer_id for p in browser.peers.values() if p.name.startswith(name)] == [peer_id]
        one = await next_event(events, peer_id, PeerChanged)
        assert one.peer.name == name and one.peer.urls == ("ws://127.0.0.1:5001/userdb",)


async def test_our_own_advert_is_never_listed(zc: AsyncZeroconf, caplog: pytest.LogCaptureFixture) -> None:
    debug_log(caplog)
    own, other = new_id(), new_id()
    own_name = unique("own")
    # the browser shares the zeroconf instance that carries our own advert, as the app does
    async with PeerBrowser(own_peer_id=own, zeroconf=zc) as browser:
        await raw_advert(zc, own_name, encode_txt(Advert(own, "userdb")))
        await raw_advert(zc, unique("other"), encode_txt(Advert(other, "userdb")))
        await browser.wait_for(lambda p: p.peer_id == other, WAIT)
        await wait_until(lambda: f"skipping advert '{own_name}.{SERVICE_TYPE}': our own" in caplog.text, WAIT)
        assert own not in browser.peers


async def test_malformed_and_foreign_adverts_are_skipped(
    zc: AsyncZeroconf, browser: PeerBrowser, caplog: pytest.LogCaptureFixture
) -> None:
    debug_log(caplog)
    valid = encode_txt(Advert(new_id(), "userdb"))
    bad: dict[str, tuple[dict[str, str] | bytes, dict[str, object]]] = {
        unique("sample without txt"): ({}, {}),
        unique("garbage"): ({"txtvers": "1", "peer": "nope", "db": "/", "tls": "maybe", "proto": "?"}, {}),
        unique("torn txt"): (b"\xff\x00txtvers=1", {}),
        unique("not utf-8"): (txt_bytes({**valid, "db": b"\xff\xfe"}), {}),
        unique("link-local without zone"): (encode_txt(Advert(new_id(), "userdb")), {"addresses": ("fe80::1",)}),
        unique("port zero"): (encode_txt(Advert(new_id(), "userdb")), {"port": 0}),
    }
    for name, (txt, options) in bad.items():
        await raw_advert(zc, name, txt, **options)  # type: ignore[arg-type]
    good = new_id()
    await raw_advert(zc, unique("good"), encode_txt(Advert(good, "userdb")))
    await browser.wait_for(lambda p: p.peer_id == good, WAIT)
    await wait_until(lambda: all(f"skipping advert '{name}." in caplog.text for name in bad), WAIT)
    assert not [p for p in browser.peers.values() if any(p.name == name for name in bad)]
    assert browser.peer(good) is not None


async def test_ipv4_and_ipv6_addresses(zc: AsyncZeroconf, browser: PeerBrowser) -> None:
    """Received over IPv4, a link-local IPv6 address has no zone: unusable, left out; others are bracketed."""
    peer_id = new_id()
    addresses = ("127.0.0.1", "fe80::7", "2001:db8::7")
    await raw_advert(zc, unique("dual"), encode_txt(Advert(peer_id, "userdb", FP)), port=4990, addresses=addresses)
    peer = await browser.wait_for(lambda p: p.peer_id == peer_id, WAIT)
    assert peer.addresses == ("2001:db8::7", "127.0.0.1")
    assert peer.urls == ("wss://[2001:db8::7]:4990/userdb", "wss://127.0.0.1:4990/userdb")


async def test_an_advert_that_turns_malformed_is_removed(zc: AsyncZeroconf, browser: PeerBrowser) -> None:
    events = browser.events()
    peer_id, name = new_id(), unique("turns bad")
    info = await raw_advert(zc, name, encode_txt(Advert(peer_id, "userdb")))
    await next_event(events, peer_id, PeerAdded)
    broken = AsyncServiceInfo(
        SERVICE_TYPE,
        info.name,
        port=4984,
        properties={"txtvers": "1"},
        parsed_addresses=["127.0.0.1"],
        server=info.server,
    )
    await zc.async_update_service(broken)
    await next_event(events, peer_id, PeerRemoved)


async def test_event_streams_start_with_the_known_peers_and_end_with_the_browser(zc: AsyncZeroconf) -> None:
    first, second = new_id(), new_id()
    browser = PeerBrowser(interfaces=LOOPBACK)
    await browser.start()
    await raw_advert(zc, unique("known"), encode_txt(Advert(first, "userdb")))
    peer = await browser.wait_for(lambda p: p.peer_id == first, WAIT)
    late = browser.events()
    assert await asyncio.wait_for(anext(late), WAIT) == PeerAdded(peer)  # the peers known when it began

    def fail(_event: PeerEvent) -> None:
        raise RuntimeError("a listener's own defect")

    seen: list[PeerEvent] = []
    browser.add_peer_listener(fail)  # logged; the others still hear of everything
    remove = browser.add_peer_listener(seen.append)
    await raw_advert(zc, unique("later"), encode_txt(Advert(second, "userdb")))
    later = await browser.wait_for(lambda p: p.peer_id == second, WAIT)
    assert PeerAdded(later) in seen
    assert await next_event(late, second, PeerAdded) == PeerAdded(later)
    remove()
    await browser.stop()
    assert [e async for e in late if e.peer.peer_id in (first, second)] == [] and browser.peers == {}
    assert [event async for event in browser.events()] == []  # a stopped browser's stream ends at once


# -- following a peer ---------------------------------------------------------------------------


async def test_a_continuous_replicator_follows_a_peer_that_moved(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    first = await peers.listener(a)
    async with PeerBrowser(own_peer_id=b.peer_id, interfaces=LOOPBACK) as browser:
        advertiser = await advertise_listener(first, peer_id=a.peer_id, name=unique("a"), interfaces=LOOPBACK)
        try:
            peer = await browser.wait_for(lambda p: p.peer_id == a.peer_id, WAIT)
            assert peer.urls == (first.urls[0],)
            replicator = peers.replicator(
                b, peer.url, continuous=True, remote_name=peer.peer_id, endpoint=browser.endpoint(peer.peer_id)
            )
            checkpoint = replication_checkpoint_id(replicator.config)
            a.save("before", {"n": 1})
            replicator.start()
            await wait_until(lambda: b.get("before") is not None, WAIT)

            await first.stop()  # the peer restarts its listener on another port
            second = await peers.listener(a)
            assert second.port != first.port
            await advertiser.update(port=second.port)
            a.save("after", {"n": 2})
            await wait_until(lambda: b.get("after") is not None, WAIT)
            await wait_for_activity(replicator, ActivityLevel.IDLE)
            assert replicator.config.url == second.urls[0]
            # the checkpoint and what the peer holds are the peer's, not its address's
            assert replication_checkpoint_id(replicator.config) == checkpoint
            assert b.remote_id(replicator.config.remote_identity) == b.remote_id(a.peer_id)
        finally:
            await advertiser.stop()


class FakeBrowser:
    """What a PeerEndpoint asks of a browser, driven by hand."""

    def __init__(self) -> None:
        self.current: dict[str, Peer] = {}
        self.listeners: list[Callable[[PeerEvent], None]] = []

    def peer(self, peer_id: str) -> Peer | None:
        return self.current.get(peer_id)

    async def wait_for(self, predicate: Callable[[Peer], bool], timeout: float | None = None) -> Peer:
        found: asyncio.Future[Peer] = asyncio.get_running_loop().create_future()

        def check(event: PeerEvent) -> None:
            if not isinstance(event, PeerRemoved) and predicate(event.peer) and not found.done():
                found.set_result(event.peer)

        remove = self.add_peer_listener(check)
        try:
            return await asyncio.wait_for(found, timeout)
        finally:
            remove()

    def add_peer_listener(self, listener: Callable[[PeerEvent], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def announce(self, peer: Peer) -> None:
        old = self.current.get(peer.peer_id)
        self.current[peer.peer_id] = peer
        for listener in list(self.listeners):
            listener(PeerAdded(peer) if old is None else PeerChanged(peer, old))

    def remove(self, peer_id: str) -> None:
        peer = self.current.pop(peer_id)
        for listener in list(self.listeners):
            listener(PeerRemoved(peer))


def peer_at(peer_id: str, *urls: str) -> Peer:
    return Peer(peer_id, "p", "db", None, tuning.SUBPROTOCOLS, 1, (), urls)


async def test_an_endpoint_tries_the_next_address_after_a_failure_and_the_last_one_when_gone() -> None:
    fake, peer_id = FakeBrowser(), new_id()
    endpoint = PeerEndpoint(fake, peer_id, wait=0.01)  # type: ignore[arg-type]
    with pytest.raises(PeerNotFoundError, match=peer_id):
        await endpoint.resolve()
    fake.announce(peer_at(peer_id, "ws://10.0.0.1:1/db", "ws://10.0.0.2:1/db"))
    assert await endpoint.resolve() == "ws://10.0.0.1:1/db"
    assert await endpoint.resolve(after_failure=True) == "ws://10.0.0.2:1/db"
    assert await endpoint.resolve() == "ws://10.0.0.2:1/db"  # it got through there: it stays
    assert await endpoint.resolve(after_failure=True) == "ws://10.0.0.1:1/db"
    fake.announce(peer_at(peer_id, "ws://10.0.0.3:2/db", "ws://10.0.0.1:2/db"))
    assert await endpoint.resolve(after_failure=True) == "ws://10.0.0.3:2/db"  # moved: its preferred URL
    fake.remove(peer_id)
    assert await endpoint.resolve() == "ws://10.0.0.3:2/db"  # not advertised now: where it was
    assert endpoint.peer == peer_at(peer_id, "ws://10.0.0.3:2/db", "ws://10.0.0.1:2/db")


async def test_an_endpoint_waits_for_its_peer_to_be_announced() -> None:
    fake, peer_id = FakeBrowser(), new_id()
    endpoint = PeerEndpoint(fake, peer_id, wait=WAIT)  # type: ignore[arg-type]
    resolving = asyncio.create_task(endpoint.resolve())
    announced = asyncio.create_task(endpoint.wait_announced())
    await asyncio.sleep(0)
    fake.announce(peer_at(new_id(), "ws://10.9.9.9:1/db"))  # another peer: not it
    await asyncio.sleep(0)
    assert not announced.done() and not resolving.done()
    fake.announce(peer_at(peer_id, "ws://10.0.0.1:1/db"))
    assert await asyncio.wait_for(resolving, WAIT) == "ws://10.0.0.1:1/db"
    await asyncio.wait_for(announced, WAIT)
    assert fake.listeners == []


# -- two machines: network namespaces joined by a veth pair ---------------------------------------

#: Serves a database on every interface of its namespace and advertises it on the interfaces
#: given; prints the port and peer ID, then runs until its standard input closes.
_SERVE_AND_ADVERTISE = """
import asyncio, sys
from engine.replication.auth import NO_AUTHENTICATION
from engine.replication.discovery import advertise_listener
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.userdata import open_database

async def main():
    with open_database(sys.argv[1]) as db:
        db.save("from-a", {"n": 1})
        listener = URLEndpointListener(ListenerConfiguration(db, authenticator=NO_AUTHENTICATION))
        await listener.start()
        advertiser = await advertise_listener(listener, peer_id=db.peer_id, name="a namespace", interfaces=sys.argv[2:])
        print(listener.port, db.peer_id, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await advertiser.stop()
        await listener.stop()

asyncio.run(main())
"""


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Namespaces A (10.77.0.1, fe80::a on vzA) and B (10.77.0.2, fe80::b on vzB), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("no ip command (iproute2)")
    suffix = uuid.uuid4().hex[:6]
    a, b = f"zcA{suffix}", f"zcB{suffix}"
    steps = [
        ["netns", "add", a], ["netns", "add", b],
        ["link", "add", "vzA", "netns", a, "type", "veth", "peer", "name", "vzB", "netns", b],
        ["-n", a, "addr", "add", "10.77.0.1/24", "dev", "vzA"], ["-n", b, "addr", "add", "10.77.0.2/24", "dev", "vzB"],
        ["-n", a, "addr", "add", "fe80::a/64", "dev", "vzA", "nodad"],
        ["-n", b, "addr", "add", "fe80::b/64", "dev", "vzB", "nodad"],
        ["-n", a, "link", "set", "lo", "up"], ["-n", a, "link", "set", "vzA", "up"],
        ["-n", b, "link", "set", "lo", "up"], ["-n", b, "link", "set", "vzB", "up"],
    ]  # fmt: skip
    try:
        for step in steps:
            done = subprocess.run(["ip", *step], capture_output=True, text=True, check=False, timeout=30)
            if done.returncode != 0:
                pytest.skip(f"cannot set up network namespaces (ip {' '.join(step)}: {done.stderr.strip()})")
        yield a, b
    finally:
        for name in (a, b):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)


def in_namespace(namespace: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, sys.executable, *args]


async def test_two_machines_find_each_other_over_ipv4_and_ipv6_link_local(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """The sample broke on IPv6: here an advert crosses a veth pair and its link-local address
    arrives with the zone of the interface it came in on, as a URL a replicator can use."""
    a, b = namespaces
    pipe = asyncio.subprocess.PIPE
    server = await asyncio.create_subprocess_exec(
        *in_namespace(a, "-c", _SERVE_AND_ADVERTISE, str(tmp_path / "a"), "10.77.0.1", "fe80::a%vzA"),
        stdin=pipe, stdout=pipe,
    )  # fmt: skip
    browse = await asyncio.create_subprocess_exec(
        *in_namespace(b, "-m", "engine.cli", "--data-dir", str(tmp_path / "b"), "--user", "clerk", "--json", "browse",
                      "--interface", "10.77.0.2", "--interface", "fe80::b%vzB"),
        stdout=pipe,
    )  # fmt: skip
    try:
        assert server.stdout is not None and browse.stdout is not None
        port, peer_id = (await asyncio.wait_for(server.stdout.readline(), WAIT)).decode().split()
        wanted = [f"ws://10.77.0.1:{port}/userdb", f"ws://[fe80::a%25vzB]:{port}/userdb"]
        while True:
            line = await asyncio.wait_for(browse.stdout.readline(), WAIT)
            assert line, "browse ended"
            record = json.loads(line)
            if record.get("peer_id") == peer_id and record["urls"] == wanted:
                break
        browse.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(browse.wait(), WAIT) == 130

        async def sync(url: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                *in_namespace(b, "-m", "engine.cli", "--data-dir", str(tmp_path / "b"), "--user", "clerk",
                              "sync", "--pull", url),
                stdout=pipe, stderr=pipe,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 6 * WAIT)
            return int(proc.returncode or 0), (out + err).decode()

        code, said = await sync(wanted[0])
        assert code == 0, said
        code, said = await sync(wanted[1])
        assert code == 0, said
    finally:
        for proc in (server, browse):
            if proc.returncode is None:
                if proc is server and server.stdin is not None:
                    server.stdin.close()
                else:
                    proc.kill()
            await asyncio.wait_for(proc.wait(), WAIT)
