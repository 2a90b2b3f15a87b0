"""The log scan finds what it must, and a sync logged at debug level shows no password and no body."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import subprocess
from pathlib import Path

import pytest

from engine.replication.auth import BasicAuthenticator, PasswordAuthenticator
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ReplicatorConfiguration
from engine.userdata import open_database
from tests.conftest import TIME_UNIT
from tests.engine.cli.test_sync_commands import CLI, TIMEOUT
from tests.log_scan import find_leaks

PASSWORD = "Tr0ub4dor-and-3-canary"
BODY_MARK = "canary-flour-from-the-mill"


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("-----BEGIN PRIVATE KEY-----\nMIIE", ["private key"]),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----", ["private key"]),
        ("-----BEGIN CERTIFICATE-----", []),
        ("> Authorization: Basic Ym9iOnB3", ["Authorization header value"]),
        ("headers={'Authorization': 'Bearer eyJhbGciOi'}", ["Authorization header value"]),
        ('body {"items": [{"key": "Flour", "value": 3}]}', ["document body"]),
        ('{"image": {"@type": "blob", "digest": "sha1-x"}}', ["document body"]),
        ("bob: wrong password", []),
        ("refused 'bob' from 127.0.0.1: unauthorized", []),
        (f"user bob password {PASSWORD} refused", ["password"]),
        (f"{PASSWORD}x is another word", []),
    ],
)
def test_the_scanner_finds_leaks_and_only_leaks(text: str, kinds: list[str]) -> None:
    assert find_leaks(text, [PASSWORD]) == kinds


@pytest.mark.asyncio
async def test_a_sync_logged_at_debug_level_shows_no_password_and_no_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, client = open_database(tmp_path / "server"), open_database(tmp_path / "client")
    listener = URLEndpointListener(
        ListenerConfiguration(
            server, host="127.0.0.1", authenticator=PasswordAuthenticator.from_users({"bob": PASSWORD})
        )
    )
    await listener.start()
    try:
        server.save("note", {"text": BODY_MARK, "items": [{"key": BODY_MARK, "value": 1}]})
        client.save("other", {"text": BODY_MARK})
        for password, expect_error in ((PASSWORD + "-wrong", True), (PASSWORD, False)):
            replicator = Replicator(
                ReplicatorConfiguration(client, listener.urls[0], authenticator=BasicAuthenticator("bob", password))
            )
            replicator.start()
            status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
            assert (status.error is not None) is expect_error
        assert client.get("note") is not None and server.get("other") is not None
    finally:
        await listener.stop()
        server.close()
        client.close()
    logged = "\n".join(caplog.text.splitlines())
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    assert PASSWORD not in logged
    assert BODY_MARK not in logged
    assert find_leaks(logged) == []


def test_the_command_line_at_debug_level_shows_no_password_key_or_body(tmp_path: Path) -> None:
    """``serve --debug`` (generated TLS identity) and ``sync --debug``, their whole stderr scanned."""
    users = tmp_path / "users.json"
    users.write_text(f'{{"name": "bob", "password": "{PASSWORD}"}}\n')
    server = subprocess.Popen(
        [*CLI, "--debug", "--data-dir", str(tmp_path / "server"), "--user", "shop", "--json", "serve",
         "--host", "127.0.0.1", "--allow-list", str(users)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    url = next(e for e in map(json.loads, server.stdout) if e["event"] == "listening")["urls"][0]
    client = [*CLI, "--debug", "--data-dir", str(tmp_path / "client"), "--user", "clerk"]
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    logged = [
        run([*client, "items", "add", BODY_MARK, "3"]).stderr,
        run([*client, "sync", url, "--username", "bob", "--password", PASSWORD + "-wrong"]).stderr,
        run([*client, "sync", url, "--username", "bob", "--password", PASSWORD]).stderr,
    ]
    server.terminate()
    logged.append(server.communicate(timeout=TIMEOUT)[1])
    text = "\n".join(logged)
    assert "DEBUG" in text, "nothing was logged at debug level: the scan would prove nothing"
    assert PASSWORD not in text and BODY_MARK not in text
    assert find_leaks(text) == []
