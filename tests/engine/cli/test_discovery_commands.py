"""``browse`` as a user meets it (the real entry point in subprocesses), and the pieces of
``serve --advertise`` and ``sync --peer``; mDNS on loopback only.

One listener is advertised for the whole module (registering takes about 1.2 s),
on a module-wide event loop, so every test that uses it is asynchronous: the
advert must keep answering while a subprocess browses.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from zeroconf.asyncio import AsyncServiceInfo

from engine.cli import main
from engine.cli.discovery_commands import advertising, following_peer
from engine.cli.output import Output
from engine.database import Database
from engine.replication.auth import NO_AUTHENTICATION
from engine.replication.discovery import PeerAdvertiser, open_zeroconf
from engine.replication.discovery_records import SERVICE_TYPE, Advert, encode_txt
from engine.replication.errors import PeerNotFoundError
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ReplicatorConfiguration, ReplicatorType
from engine.userdata import open_user_database
from tests.conftest import TIME_UNIT
from tests.engine.cli.test_sync_commands import CLI, CREDENTIALS, Server, allow_list, cli

LOOPBACK = ["127.0.0.1"]
TIMEOUT = 30 * TIME_UNIT
module_loop = pytest.mark.asyncio(loop_scope="module")


class RecordingOutput(Output):
    """An Output that keeps its records instead of printing them."""

    def __init__(self) -> None:
        super().__init__(json_lines=True)
        self.records: list[dict[str, Any]] = []

    def record(self, data: dict[str, Any], text: str) -> None:
        self.records.append(data)

    def result(self, data: dict[str, Any], text: str) -> None:
        self.records.append(data)


@dataclass
class Shop:
    """The user ``user`` serving its database on 127.0.0.1, advertised as ``serve --advertise`` will,
    and another peer's advert beside it."""

    data: Path
    user: str
    db: Database
    listener: URLEndpointListener
    advertiser: PeerAdvertiser
    other_name: str
    out: RecordingOutput = field(default_factory=RecordingOutput)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Shop]:
    data, user = tmp_path_factory.mktemp("shop"), f"shop-{uuid.uuid4().hex[:6]}"
    db = open_user_database(user, data, seed=False)
    db.save("welcome", {"n": 1})
    listener = URLEndpointListener(ListenerConfiguration(db, host="127.0.0.1", authenticator=NO_AUTHENTICATION))
    await listener.start()
    out = RecordingOutput()
    other_name = f"other {user}"  # a peer advertised at once (no probing), as any peer might
    other = AsyncServiceInfo(
        SERVICE_TYPE, f"{other_name}.{SERVICE_TYPE}", port=4984, parsed_addresses=LOOPBACK,
        properties=encode_txt(Advert(str(uuid.uuid4()), "userdb")), server=f"{uuid.uuid4().hex}.local.",
    )  # fmt: skip
    zc = open_zeroconf(LOOPBACK)
    await zc.async_register_service(other, cooperating_responders=True, strict=False)
    try:
        async with advertising(listener, db.peer_id, out, user=user, interfaces=LOOPBACK) as advertiser:
            yield Shop(data, user, db, listener, advertiser, other_name, out)
    finally:
        await zc.async_close()
        await listener.stop()
        db.close()


async def run_cli(*args: str, data: Path, user: str = "clerk") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, "--data-dir", str(data), "--user", user, *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


async def read_until(stream: asyncio.StreamReader | None, text: str) -> list[str]:
    """Lines read from ``stream`` up to the first that holds ``text``."""
    assert stream is not None
    lines: list[str] = []

    async def read() -> list[str]:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"ended before {text!r}: {lines[-20:]}")
            lines.append(line.rstrip("\n"))
            if text in line:
                return lines

    return await asyncio.wait_for(read(), TIMEOUT)


@module_loop
async def test_the_listener_is_advertised_as_its_user_on_this_machine(shop: Shop) -> None:
    assert shop.advertiser.name.startswith(f"{shop.user} on ")
    assert shop.out.records == [
        {
            "event": "advertising",
            "name": shop.advertiser.name,
            "peer_id": shop.db.peer_id,
            "service": f"{shop.advertiser.name}._cblistservicesync._tcp.local.",
        }
    ]


@module_loop
async def test_browse_lists_peers_as_json_lines_until_the_timeout(shop: Shop, tmp_path: Path) -> None:
    proc = await run_cli("--json", "browse", "--interface", "127.0.0.1", "--timeout", str(2 * TIME_UNIT), data=tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert records[0] == {"event": "browsing", "interfaces": ["127.0.0.1"]}
    assert {
        "event": "peer_added",
        "name": shop.advertiser.name,
        "peer_id": shop.db.peer_id,
        "database": "userdb",
        "urls": shop.listener.urls,
        "tls": False,
        "fingerprint": None,
        "protocols": ["BLIP_3+CBMobile_3", "BLIP_3+CBMobile_2"],
    } in records
    assert records[-1]["event"] == "stopped" and records[-1]["reason"] == "timeout"
    found = sorted(r["name"] for r in records if r["event"] == "peer_added")
    assert found == sorted([shop.advertiser.name, shop.other_name])


@module_loop
async def test_browse_never_lists_the_users_own_database_and_stops_at_ctrl_c(shop: Shop) -> None:
    """Browsing as the shop's user: the other peer is listed; its own advert is seen and skipped."""
    proc = await run_cli("--debug", "browse", "--interface", "127.0.0.1", data=shop.data, user=shop.user)
    lines, _ = await asyncio.gather(read_until(proc.stdout, "found: "), read_until(proc.stderr, "our own"))
    assert lines[0] == "browsing on 127.0.0.1"
    assert lines[-1].startswith(f"found: {shop.other_name!r} peer ")
    assert lines[-1].endswith(" ws://127.0.0.1:4984/userdb (no TLS)")
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 130
    assert out.decode().splitlines()[-1].startswith("stopped (SIGINT): ")
    assert shop.db.peer_id not in "\n".join(lines) + out.decode()


def test_browse_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data-dir", str(tmp_path), "--user", "clerk", "browse"]
    assert main([*args, "--timeout", "0"]) == 2
    assert "--timeout must be a number of seconds above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*args, "--interface", "eth0"])
    assert exited.value.code == 2
    assert "not an IP address: 'eth0'" in capsys.readouterr().err
    assert not (tmp_path / "clerk").exists()  # browse creates no database


@module_loop
async def test_a_peer_found_by_id_or_name_is_synced_with(shop: Shop, tmp_path: Path) -> None:
    with open_user_database("clerk", tmp_path, seed=False) as client:
        for query in (shop.db.peer_id, shop.advertiser.name.upper()):
            out = RecordingOutput()
            async with following_peer(query, out, own_peer_id=client.peer_id, interfaces=LOOPBACK) as target:
                assert target.peer.peer_id == shop.db.peer_id
                options = target.replicator_options()
                assert options["url"] == shop.listener.urls[0] and options["remote_name"] == shop.db.peer_id
                config = ReplicatorConfiguration(client, type=ReplicatorType.PULL, **options)
                replicator = Replicator(config)
                replicator.start()
                status = await asyncio.wait_for(replicator.wait_stopped(), TIMEOUT)
                assert status.error is None, status.error
            assert out.records[0]["event"] == "peer_found" and out.records[0]["peer_id"] == shop.db.peer_id
        assert client.get("welcome") is not None


@module_loop
async def test_a_peer_not_on_the_network_is_not_found() -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(PeerNotFoundError, match=missing):
        async with following_peer(missing, RecordingOutput(), interfaces=LOOPBACK, timeout=0.3):
            raise AssertionError("not reached")


def test_serve_advertise_and_sync_peer_over_tls_trust_the_peer_by_its_id(tmp_path: Path) -> None:
    """The whole way through the command line: a TLS listener advertised, found by its name,
    trusted on first use under its peer ID, and synced with."""
    server = Server(tmp_path, "--allow-list", str(allow_list(tmp_path)), "--advertise", "--interface", "127.0.0.1")
    try:
        advert = server.wait_for("advertising")
        synced = cli(tmp_path, "--json", "sync", "--peer", str(advert["name"]), "--interface", "127.0.0.1",
                     *CREDENTIALS)  # fmt: skip
        assert synced.returncode == 0, synced.stderr
        events = [json.loads(line) for line in synced.stdout.splitlines()]
        found = next(e for e in events if e["event"] == "peer_found")
        assert found["peer_id"] == advert["peer_id"] and found["tls"] and found["fingerprint"] == server.fingerprint
        trusted = next(e for e in events if e["event"] == "trusted_on_first_use")
        assert trusted == {
            "event": "trusted_on_first_use",
            "peer": advert["peer_id"],
            "fingerprint": server.fingerprint,
        }
        assert events[-1]["event"] == "done"
        listed = [json.loads(line) for line in cli(tmp_path, "--json", "trust", "list").stdout.splitlines()]
        assert [e["peer"] for e in listed] == [advert["peer_id"]]
    finally:
        out = server.stop()
    assert server.proc.returncode == 0 and json.loads(out.splitlines()[-1])["event"] == "stopped"


def test_sync_needs_a_url_or_a_peer(tmp_path: Path) -> None:
    for args in ([], ["wss://127.0.0.1:9/userdb", "--peer", "shop"]):
        failed = cli(tmp_path, "sync", *args)
        assert failed.returncode == 2 and "sync needs a URL or --peer PEER" in failed.stderr
