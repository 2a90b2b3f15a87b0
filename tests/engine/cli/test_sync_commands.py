"""``serve`` and ``sync`` as a user meets them: the real entry point in subprocesses on 127.0.0.1."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.inventory import LIST_DOC_ID
from engine.userdata import open_user_database
from tests.conftest import SEED_DATA, TIME_UNIT

#: The installed ``inventory-sync`` script when there is one, else the module.
_SCRIPT = Path(sys.executable).parent / "inventory-sync"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]
TIMEOUT = 60 * TIME_UNIT


def allow_list(tmp_path: Path) -> Path:
    shared = SEED_DATA / "userallowlist.json"
    if shared.exists():
        return shared  # the sample's own allow list (bob / password)
    path = tmp_path / "users.json"
    path.write_text('{"name":"bob","password":"password"}\n')
    return path


class Server:
    """``inventory-sync serve`` for the user ``shop``, started in a subprocess."""

    def __init__(self, tmp_path: Path, *serve_args: str, env: dict[str, str] | None = None) -> None:
        self.data = tmp_path / "server"
        self.proc = subprocess.Popen(
            [*CLI, "--data-dir", str(self.data), "--user", "shop", "--json", "serve", "--host", "127.0.0.1",
             *serve_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.events: list[dict[str, object]] = []
        listening = self.wait_for("listening")
        self.url = str(listening["urls"][0])  # type: ignore[index]
        self.fingerprint = listening["fingerprint"]

    def wait_for(self, event: str) -> dict[str, object]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            record = json.loads(line)
            self.events.append(record)
            if record["event"] == event:
                return record
        raise AssertionError(f"serve ended before {event!r}: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def stop(self) -> str:
        """Stop it with SIGTERM; return what it printed since (stderr kept in ``self.err``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, self.err = self.proc.communicate(timeout=TIMEOUT)
        return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, "--allow-list", str(allow_list(tmp_path)))
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
    running.proc.wait()


def cli(tmp_path: Path, *args: str, user: str = "clerk") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", user, *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


CREDENTIALS = ("--username", "bob", "--password", "password")


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


# -- results that happened, and only those -------------------------------------------------


def test_a_one_shot_sync_says_what_it_does(tmp_path: Path, server: Server) -> None:
    done = cli(tmp_path, "sync", server.url, *CREDENTIALS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("created a database for user 'clerk' in ")
    assert lines[1] == f"connecting to {server.url}"
    assert lines[2].startswith(f"trusting {server.url.split('/')[2]} on first use: SHA-256 {server.fingerprint} ")
    assert lines[3] == f"connected to {server.url} (BLIP_3+CBMobile_3)"
    assert lines[-1].startswith("done: pushed 0, pulled 1 document in ")
    items = json_lines(cli(tmp_path, "--json", "items").stdout)
    assert len(items) >= 12  # the server's starter list arrived with its pictures
    picture = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "blob", "get", str(items[0]["image"])],
        capture_output=True, check=True,
    )  # fmt: skip
    assert picture.stdout[:2] == b"\xff\xd8"
    assert cli(tmp_path, "set", "Flour", "77").returncode == 0
    pushed = cli(tmp_path, "--json", "sync", server.url, *CREDENTIALS, "--push")
    events = json_lines(pushed.stdout)
    assert [e["event"] for e in events if e["event"] in ("connecting", "connected", "done")] == [
        "connecting", "connected", "done"
    ]  # fmt: skip
    assert {k: events[-1][k] for k in ("pushed", "pulled")} == {"pushed": 1, "pulled": 0}
    assert any(e.get("activity") == "busy" for e in events)
    out = server.stop()
    assert server.proc.returncode == 0
    served = [json.loads(line) for line in out.splitlines()]
    connected = [e for e in server.events + served if e["event"] == "connected"]
    assert len(connected) == 2 and connected[0]["user"] == "bob" and str(connected[0]["peer"]).startswith("127.0.0.1:")
    assert served[-1]["event"] == "stopped"
    check = subprocess.run(
        [*CLI, "--data-dir", str(server.data), "--user", "shop", "--json", "items"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert {k: v for k, v in json_lines(check.stdout)[0].items() if k != "image"} == {"key": "Flour", "value": 77}


def test_serve_prints_who_connects_from_where(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", "serve", "--host", "127.0.0.1",
         "--allow-list", str(allow_list(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline(), proc.stdout.readline()]
    assert lines[0].startswith("created a database for user 'shop' with the starter inventory in ")
    assert lines[1].startswith("listening on wss://127.0.0.1:")  # TLS with the generated identity by default
    assert re.fullmatch(r"TLS \(generated\), certificate SHA-256 fingerprint: [0-9A-F:]{95}\n", lines[2])
    url = lines[1].split()[-1]
    assert cli(tmp_path, "sync", url, *CREDENTIALS).returncode == 0
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert [line.split(" from ")[0] for line in out.splitlines()[:2]] == ["connected: bob", "disconnected: bob"]
    assert out.splitlines()[-1] == "stopped"


def test_a_sync_that_leaves_a_document_behind_says_which_and_exits_1(tmp_path: Path, server: Server) -> None:
    assert cli(tmp_path, "sync", server.url, *CREDENTIALS).returncode == 0
    subprocess.run(  # the shop changes the item meanwhile, from another terminal
        [*CLI, "--data-dir", str(server.data), "--user", "shop", "set", "Flour", "5"], check=True, capture_output=True
    )  # fmt: skip
    assert cli(tmp_path, "set", "Flour", "6").returncode == 0
    pushed = cli(
        tmp_path, "--json", "sync", server.url, *CREDENTIALS, "--push"
    )  # a push alone cannot settle a conflict
    assert pushed.returncode == 1
    events = [e for e in json_lines(pushed.stdout) if e["event"] in ("document_failed", "incomplete", "done")]
    assert [(e["event"], e.get("direction"), e.get("id")) for e in events] == [
        ("document_failed", "push", LIST_DOC_ID),
        ("incomplete", None, None),
    ]
    assert "conflict" in str(events[0]["error"]) and events[1]["failed"] == 1
    again = cli(tmp_path, "sync", server.url, *CREDENTIALS, "--push")  # the next run does not pretend either
    assert again.returncode == 1 and "done" not in again.stdout
    assert f"not synced (push): {LIST_DOC_ID}: " in again.stdout
    assert again.stdout.splitlines()[-1] == (
        "the peer changed them too: a sync that also pulls (without --push) merges the changes"
    )
    healed = cli(tmp_path, "sync", server.url, *CREDENTIALS)  # pulling too: merged, then pushed
    assert healed.returncode == 0 and healed.stdout.splitlines()[-1].startswith("done:"), healed.stdout + healed.stderr


def big_server_database(tmp_path: Path, count: int) -> None:
    """The shop's database with ``count`` documents besides its list, made directly (quicker than the CLI)."""
    db = open_user_database("shop", tmp_path / "server")
    try:
        with db.batch() as batch:
            for i in range(count):
                batch.save(f"doc-{i:06d}", {"i": i, "text": "some words to make the body longer " * 3})
    finally:
        db.close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_one_shot_sync_interrupted_says_so_and_exits_130_or_143(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    big_server_database(tmp_path, 40_000)
    server = Server(tmp_path, "--no-auth")
    try:
        proc = subprocess.Popen(
            [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "--json", "sync", server.url, "--pull"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "progress" and 0 < int(event["completed"]) < int(event["total"]):  # type: ignore[call-overload]
                break
        else:
            raise AssertionError("no progress before the end")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == code, err
        last = json.loads(out.splitlines()[-1])
        assert last["event"] == "interrupted" and last["signal"] == sig.name
        assert 0 < int(last["pulled"]) < 40_001  # type: ignore[call-overload]
        assert '"event":"done"' not in out
        rest = cli(tmp_path, "--json", "sync", server.url, "--pull")  # goes on from there
        assert rest.returncode == 0
        finished = json.loads(rest.stdout.splitlines()[-1])
        assert finished["event"] == "done" and int(finished["pulled"]) < 40_001  # type: ignore[call-overload]
        count = subprocess.run(
            [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "--json", "changes"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert len(count.stdout.splitlines()) == 40_001
    finally:
        server.stop()


def test_a_continuous_sync_stopped_by_the_user_exits_0_after_a_clean_stop(tmp_path: Path, server: Server) -> None:
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "--json", "sync", server.url,
         *CREDENTIALS, "--continuous"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    received, edited = 0, False  # the list, then its edit: "documents" lines report them together or apart
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "documents" and event["direction"] == "pull":
            received += event["count"]
        if event.get("activity") == "idle" and not edited:
            subprocess.run(  # an edit on the shop's side reaches the running sync
                [*CLI, "--data-dir", str(server.data), "--user", "shop", "set", "Flour", "5"], check=True,
                capture_output=True,
            )  # fmt: skip
            edited = True
        if edited and received >= 2:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "stopped" and last["signal"] == "SIGINT" and int(last["pulled"]) >= 2  # type: ignore[call-overload]


def test_offline_says_why_and_when_it_retries(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failed = cli(tmp_path, "sync", f"ws://127.0.0.1:{port}/userdb", "--continuous", "--max-attempts", "2")
    assert failed.returncode == 1
    lines = failed.stdout.splitlines()
    offline = [line for line in lines if line.startswith("offline: ")]
    assert len(offline) == 1 and offline[0].endswith("retrying in 1 s") and "127.0.0.1" in offline[0]
    assert failed.stderr.startswith("inventory-sync: error: ") and "Traceback" not in failed.stderr


def test_sync_needs_no_user_name_when_the_listener_needs_none(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-auth")
    try:
        done = cli(tmp_path, "sync", server.url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].startswith("done: pushed 0, pulled 1 document")
    finally:
        server.stop()


def test_quiet_prints_nothing_but_errors(tmp_path: Path, server: Server) -> None:
    done = cli(tmp_path, "--quiet", "sync", server.url, *CREDENTIALS)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    failed = cli(tmp_path, "--quiet", "sync", server.url, "--username", "bob", "--password", "nope")
    assert failed.returncode == 1 and failed.stdout == "" and "401" in failed.stderr


def test_progress_shows_as_lines_when_piped_and_as_a_bar_on_a_terminal(tmp_path: Path) -> None:
    big_server_database(tmp_path, 20_000)
    server = Server(tmp_path, "--no-auth")
    try:
        piped = cli(tmp_path, "sync", server.url, "--pull")
        assert piped.returncode == 0
        # lines come only after a second (tests/engine/cli/test_reports.py times them): a quick machine shows none;
        # the total is what the peer has announced so far: it grows batch by batch
        progress = [line for line in piped.stdout.splitlines() if line.startswith("progress: ")]
        assert all(re.fullmatch(r"progress: [\d,]+ of [\d,]+ documents", line) for line in progress)
        assert piped.stdout.splitlines()[-1].startswith("done: pushed 0, pulled 20,001 documents")
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal has a size
        proc = subprocess.Popen(
            [*CLI, "--data-dir", str(tmp_path / "tty"), "--user", "clerk", "sync", server.url, "--pull"],
            stdin=follower, stdout=follower, stderr=follower, close_fds=True,
        )  # fmt: skip
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None or select.select([leader], [], [], 0)[0]:
            if select.select([leader], [], [], 1)[0]:
                try:
                    seen += os.read(leader, 65536)
                except OSError:  # the terminal closed
                    break
            assert time.monotonic() < deadline
        os.close(leader)
        assert proc.wait(TIMEOUT) == 0
        text = seen.decode(errors="replace")
        assert "syncing" in text and "doc/s" in text  # tqdm's bar
        assert "progress: " not in text and "done: pushed 0, pulled 20,001 documents" in text
    finally:
        server.stop()


# -- usage errors: one clear line, exit 2, before anything connects or is created -------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ws://127.0.0.1:70000/userdb", "the port is not a number from 1 to 65535"),
        ("ws://127.0.0.1:port/userdb", "the port is not a number from 1 to 65535"),
        ("ws://[::1/userdb", "IPv6"),
        ("ws://bob:password@127.0.0.1:4984/userdb", "give credentials separately"),
        ("ws://127.0.0.1:4984", "names no database"),
        ("http://127.0.0.1:4984/userdb", "ws:// or wss://"),
    ],
)
def test_a_url_the_replicator_cannot_use_is_a_usage_error(tmp_path: Path, url: str, words: str) -> None:
    failed = cli(tmp_path, "sync", url)
    assert failed.returncode == 2 and failed.stdout == ""
    assert len(failed.stderr.splitlines()) == 1 and words in failed.stderr and "password" not in failed.stderr.lower()
    assert not (tmp_path / "client").exists()  # nothing was created


def test_serve_refuses_what_cannot_work(tmp_path: Path) -> None:
    serve = [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", "serve"]
    for args, words in [
        ([], "--allow-list"),
        (["--no-auth", "--port", "70000"], "out of range"),
        (["--no-auth", "--port", "http"], "not a port number"),
    ]:
        proc = subprocess.run([*serve, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False)
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr)
    for content, words in [("[]", "names no user"), ('{"name":"bob","password":""}', "empty password")]:
        users = tmp_path / "users.json"
        users.write_text(content)
        proc = subprocess.run(
            [*serve, "--allow-list", str(users)], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "server").exists()


def test_wrong_password_is_one_clear_line(tmp_path: Path, server: Server) -> None:
    failed = cli(tmp_path, "sync", server.url, "--username", "bob", "--password", "nope")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "inventory-sync: error: sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)"
    ]


def test_the_listener_answers_400_to_two_authorization_headers(server: Server) -> None:
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the test reads the answer, whoever sends it
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw, context.wrap_socket(raw) as conn:
        conn.sendall(
            b"GET /userdb/_blipsync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: BLIP_3+CBMobile_3\r\n"
            b"Authorization: Basic Ym9iOnBhc3N3b3Jk\r\nAuthorization: Basic Ym9iOnBhc3N3b3Jk\r\n\r\n"
        )
        assert conn.recv(100).startswith(b"HTTP/1.1 400 ")
    server.stop()
    assert "Traceback" not in server.err


def test_unreachable_listener(tmp_path: Path) -> None:
    failed = cli(tmp_path, "sync", "ws://127.0.0.1:9/userdb", "--username", "bob", "--password", "x")
    assert failed.returncode == 1 and "127.0.0.1" in failed.stderr and "Traceback" not in failed.stderr


def test_serve_on_a_port_in_use_says_so_in_words(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(tmp_path, "serve", "--no-auth", "--host", "127.0.0.1", "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"inventory-sync: error: cannot listen on 127.0.0.1 port {port}: that port is already in use by another program"
    )


def test_a_read_only_peer_refusing_our_changes_says_how_to_take_its_own(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-auth", "--read-only")
    try:
        assert cli(tmp_path, "sync", server.url, "--pull").returncode == 0
        assert cli(tmp_path, "set", "Flour", "6").returncode == 0
        refused = cli(tmp_path, "sync", server.url)
        assert refused.returncode == 1
        last = refused.stderr.strip().splitlines()[-1]
        assert "this peer is read-only" in last and "--pull takes its changes without offering ours" in last
        assert cli(tmp_path, "sync", server.url, "--pull").returncode == 0
    finally:
        server.stop()
