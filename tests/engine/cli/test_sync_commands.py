"""``serve`` and ``sync`` as separate processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SEED_DATA, TIME_UNIT

CLI = [sys.executable, "-m", "engine.cli"]


def allow_list(tmp_path: Path) -> Path:
    shared = SEED_DATA / "userallowlist.json"
    if shared.exists():
        return shared  # the sample's own allow list (bob / password)
    path = tmp_path / "users.json"
    path.write_text('{"name":"bob","password":"password"}\n')
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", "--json", "serve",
         "--host", "127.0.0.1", "--allow-list", str(allow_list(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "listening" and len(first["urls"]) == 1
    yield proc, first["urls"][0]
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def sync(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", *args],
        capture_output=True, text=True, timeout=60 * TIME_UNIT, check=False,
    )  # fmt: skip


def test_serve_needs_an_allow_list(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "--data-dir", str(tmp_path), "serve"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "--allow-list" in proc.stderr


def test_sync_then_stop_the_server(tmp_path: Path, server: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = server
    done = sync(tmp_path, "sync", url, "--username", "bob", "--password", "password")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done: pushed 0, pulled 1 documents"
    items = sync(tmp_path, "--json", "items")
    assert len(items.stdout.splitlines()) >= 12  # the server's starter list arrived with its pictures
    digest = json.loads(items.stdout.splitlines()[0])["image"]
    picture = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "blob", "get", digest],
        capture_output=True, check=True,
    )  # fmt: skip
    assert picture.stdout[:2] == b"\xff\xd8"
    edited = sync(tmp_path, "set", "Flour", "77")
    assert edited.returncode == 0
    pushed = sync(tmp_path, "--json", "sync", url, "--username", "bob", "--password", "password", "--push")
    lines = [json.loads(line) for line in pushed.stdout.splitlines()]
    assert lines[-1] == {"event": "done", "pushed": 1, "pulled": 0}
    assert any(line.get("activity") == "busy" for line in lines)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10 * TIME_UNIT)
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events.count("connected") == 2 and events.count("disconnected") == 2 and events[-1] == "stopped"
    check = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", "--json", "items"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert {k: v for k, v in json.loads(check.stdout.splitlines()[0]).items() if k != "image"} == {
        "key": "Flour",
        "value": 77,
    }


def test_a_sync_that_leaves_a_document_behind_says_which_and_exits_1(
    tmp_path: Path, server: tuple[subprocess.Popen[str], str]
) -> None:
    _, url = server
    credentials = ("--username", "bob", "--password", "password")
    assert sync(tmp_path, "sync", url, *credentials).returncode == 0
    subprocess.run(  # the shop changes the item meanwhile, from another terminal
        [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", "set", "Flour", "5"], check=True
    )  # fmt: skip
    assert sync(tmp_path, "set", "Flour", "6").returncode == 0
    pushed = sync(tmp_path, "--json", "sync", url, *credentials, "--push")  # a push alone cannot settle a conflict
    assert pushed.returncode == 1
    lines = [json.loads(line) for line in pushed.stdout.splitlines() if '"status"' not in line]
    assert [(e["event"], e.get("direction"), e.get("id")) for e in lines] == [
        ("document_failed", "push", "doc::list"),
        ("incomplete", None, None),
    ]
    assert "conflict" in lines[0]["error"] and lines[1]["failed"] == 1
    text = sync(tmp_path, "sync", url, *credentials, "--push")
    assert text.returncode == 1 and "done" not in text.stdout
    assert text.stdout.splitlines()[0].startswith("not synced (push): doc::list: ")
    healed = sync(tmp_path, "sync", url, *credentials)  # pulling too: merged, then pushed
    assert healed.returncode == 0 and healed.stdout.startswith("done:"), healed.stdout + healed.stderr


def test_wrong_password_is_one_clear_line(tmp_path: Path, server: tuple[subprocess.Popen[str], str]) -> None:
    _, url = server
    failed = sync(tmp_path, "sync", url, "--username", "bob", "--password", "nope")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.strip().splitlines() == ["inventory-sync: error: unauthorized (HTTP 401)"]


def test_unreachable_listener(tmp_path: Path) -> None:
    failed = sync(tmp_path, "sync", "ws://127.0.0.1:9/userdb", "--username", "bob", "--password", "x")
    assert failed.returncode == 1 and "127.0.0.1" in failed.stderr and "Traceback" not in failed.stderr


def test_continuous_sync_stops_cleanly_on_sigint(tmp_path: Path, server: tuple[subprocess.Popen[str], str]) -> None:
    _, url = server
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "--json", "sync", url,
         "--username", "bob", "--password", "password", "--continuous"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("activity") == "idle":
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10 * TIME_UNIT)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["event"] == "done"
