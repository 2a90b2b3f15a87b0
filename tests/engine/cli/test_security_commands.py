"""TLS on the command line: ``serve --tls``, ``sync --verify``, ``identity`` and ``trust``, in subprocesses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from engine.replication.listener_tls import GeneratedIdentity
from engine.replication.tls import TLSIdentity
from tests.conftest import SEED_DATA, needs_shared
from tests.engine.cli.test_sync_commands import CLI, CREDENTIALS, TIMEOUT, Server, allow_list, cli, json_lines

SEED_P12 = SEED_DATA / "listener-cert-pkey.p12"
SEED_CER = SEED_DATA / "listener-pinned-cert.cer"
WRONG_CER = SEED_DATA / "certs-extra" / "pinned-invalid-listener-cert.cer"


def serve(tmp_path: Path, *args: str) -> Server:
    return Server(tmp_path, "--allow-list", str(allow_list(tmp_path)), *args)


def server_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", *args],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def test_the_generated_identity_is_kept_shown_and_renewed(tmp_path: Path) -> None:
    server = serve(tmp_path)
    fingerprint = server.fingerprint
    server.stop()
    key_file = tmp_path / "server" / "users" / "shop" / "listener-identity.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    shown = json_lines(server_cli(tmp_path, "--json", "identity", "show").stdout)[0]
    assert shown["fingerprint"] == fingerprint and "127.0.0.1" in shown["ip_addresses"]  # type: ignore[operator]
    pem = server_cli(tmp_path, "identity", "show", "--pem").stdout
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" not in pem

    again = serve(tmp_path)  # the same identity after a restart
    assert again.fingerprint == fingerprint
    again.stop()
    renewed = server_cli(tmp_path, "--json", "identity", "renew")
    assert renewed.returncode == 0 and "fingerprint changed" in renewed.stderr
    assert json_lines(renewed.stdout)[0]["fingerprint"] != fingerprint


def test_identity_show_without_a_database_or_identity_says_so(tmp_path: Path) -> None:
    shown = server_cli(tmp_path, "identity", "show")
    assert shown.returncode == 1 and "no database for user 'shop'" in shown.stderr
    assert server_cli(tmp_path, "seed").returncode == 0
    shown = server_cli(tmp_path, "identity", "show")
    assert shown.returncode == 1 and "no generated identity yet: serve creates one" in shown.stderr


def test_trust_on_first_use_then_a_changed_certificate_is_refused_until_accepted(tmp_path: Path) -> None:
    server = serve(tmp_path)
    first = cli(tmp_path, "--json", "sync", server.url, *CREDENTIALS)
    assert first.returncode == 0, first.stderr
    trusted = [e for e in json_lines(first.stdout) if e["event"] == "trusted_on_first_use"]
    assert [e["fingerprint"] for e in trusted] == [server.fingerprint]
    second = cli(tmp_path, "--json", "sync", server.url, *CREDENTIALS)
    assert second.returncode == 0 and "trusted_on_first_use" not in second.stdout
    port = server.url.split(":")[2].split("/")[0]
    server.stop()

    assert server_cli(tmp_path, "identity", "renew").returncode == 0
    server = serve(tmp_path, "--port", port)
    refused = cli(tmp_path, "sync", server.url, *CREDENTIALS)
    assert refused.returncode == 1 and refused.stdout.count("connecting") == 1  # refused for good, no retry
    (error,) = refused.stderr.splitlines()
    assert "certificate changed" in error and server.fingerprint in error  # type: ignore[operator]
    assert (
        f"inventory-sync --data-dir {tmp_path / 'client'} --user clerk trust accept 127.0.0.1:{port} {server.fingerprint}"
        in error
    )
    listed = json_lines(cli(tmp_path, "--json", "trust", "list").stdout)
    assert [(e["peer"], e["fingerprint"] != server.fingerprint) for e in listed] == [(f"127.0.0.1:{port}", True)]

    accepted = cli(tmp_path, "trust", "accept", f"127.0.0.1:{port}", str(server.fingerprint))
    assert accepted.returncode == 0, accepted.stderr
    assert cli(tmp_path, "sync", server.url, *CREDENTIALS).returncode == 0
    assert cli(tmp_path, "trust", "forget", f"127.0.0.1:{port}").returncode == 0
    assert cli(tmp_path, "trust", "forget", f"127.0.0.1:{port}").returncode == 1
    assert cli(tmp_path, "trust", "list").stdout == "no peer trusted yet\n"
    server.stop()


def test_pinning_by_fingerprint(tmp_path: Path) -> None:
    server = serve(tmp_path)
    assert cli(tmp_path, "sync", server.url, *CREDENTIALS, "--pin", str(server.fingerprint)).returncode == 0
    wrong = "AB" * 32
    refused = cli(tmp_path, "sync", server.url, *CREDENTIALS, "--pin", wrong)
    assert refused.returncode == 1 and refused.stdout.count("connecting") == 1
    assert "refused the server's certificate" in refused.stderr and str(server.fingerprint) in refused.stderr
    plain = cli(tmp_path, "sync", server.url.replace("wss://", "ws://"), *CREDENTIALS)
    assert plain.returncode == 1 and "if the listener uses TLS, its URL starts with wss://" in plain.stderr
    server.stop()


@needs_shared(SEED_P12)
def test_the_sample_identity_serves_and_its_pinned_certificate_is_accepted(tmp_path: Path) -> None:
    env = {**os.environ, "INVENTORY_SYNC_IDENTITY_PASSWORD": "couchbase"}
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(tmp_path / "server"), "--user", "shop", "--json", "serve", "--host", "127.0.0.1",
         "--allow-list", str(allow_list(tmp_path)), "--tls", "imported", "--identity", str(SEED_P12)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        listening = next(e for e in map(json.loads, proc.stdout) if e["event"] == "listening")
        assert listening["fingerprint"].startswith("5C:94:37:6E")
        url = listening["urls"][0]
        assert cli(tmp_path, "sync", url, *CREDENTIALS, "--pinned-cert", str(SEED_CER)).returncode == 0
        refused = cli(tmp_path, "sync", url, *CREDENTIALS, "--pinned-cert", str(WRONG_CER))
        assert refused.returncode == 1 and "refused the server's certificate" in refused.stderr
        expired = cli(tmp_path, "sync", url, *CREDENTIALS, "--verify", "self-signed")
        assert expired.returncode == 1 and "expired" in expired.stderr  # as Couchbase Lite's self-signed mode
    finally:
        proc.terminate()
        proc.communicate(timeout=TIMEOUT)


def test_tls_disabled_warns_that_passwords_cross_in_clear(tmp_path: Path) -> None:
    server = serve(tmp_path, "--tls", "disabled")
    assert server.url.startswith("ws://") and server.fingerprint is None
    assert cli(tmp_path, "sync", server.url, *CREDENTIALS).returncode == 0
    server.stop()
    assert server.err.count("TLS is disabled: passwords and documents cross the network in clear") == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--tls", "imported"], "--tls imported needs --identity"),
        (["--identity", "x.p12"], "go with --tls imported"),
        (["--tls", "imported", "--identity", "missing.p12", "--identity-password", "x"], "missing.p12"),
        (["--tls", "bogus"], "invalid choice"),
    ],
)
def test_serve_tls_options_that_cannot_work(tmp_path: Path, args: list[str], words: str) -> None:
    failed = server_cli(tmp_path, "serve", "--no-auth", *args)
    assert failed.returncode == 2 and words in failed.stderr, failed.stderr


def test_a_wrong_identity_password_is_one_clear_line(tmp_path: Path) -> None:
    server = serve(tmp_path)  # makes a generated identity; export it as PKCS#12 to import it
    server.stop()
    identity = GeneratedIdentity(tmp_path / "server" / "users" / "shop").load()
    assert identity is not None
    key = serialization.load_pem_private_key(identity.export_private_key_pem(), None)
    p12 = tmp_path / "id.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"id",
            key,
            identity.certificate,
            None,
            serialization.BestAvailableEncryption(b"right"),  # type: ignore[arg-type]
        )
    )
    failed = server_cli(tmp_path, "serve", "--no-auth", "--tls", "imported", "--identity", str(p12),
                        "--identity-password", "wrong")  # fmt: skip
    assert failed.returncode == 2 and "wrong password" in failed.stderr and "right" not in failed.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["ws://127.0.0.1:9/userdb", "--verify", "tofu"], "--verify is for wss:// URLs"),
        (["ws://127.0.0.1:9/userdb", "--pin", "AB" * 32], "--pin is for wss:// URLs"),
        (["wss://127.0.0.1:9/userdb", "--pin", "12:34"], "not a SHA-256 fingerprint"),
        (["wss://127.0.0.1:9/userdb", "--verify", "ca", "--pin", "AB" * 32], "does not use a pin"),
        (["wss://127.0.0.1:9/userdb", "--verify", "pinned"], "needs a certificate or a SHA-256 fingerprint"),
        (["wss://127.0.0.1:9/userdb", "--client-cert", "c.pem"], "--client-cert needs --client-key"),
        (["wss://127.0.0.1:9/userdb", "--client-key", "k.pem"], "--client-key goes with --client-cert"),
    ],
)
def test_sync_tls_options_that_cannot_work(tmp_path: Path, args: list[str], words: str) -> None:
    failed = cli(tmp_path, "sync", *args)
    assert failed.returncode == 2 and words in failed.stderr, failed.stderr
    assert not (tmp_path / "client").exists()


def hash_password(name: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "hash-password", name], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def test_hash_password_prints_an_entry_that_serve_accepts(tmp_path: Path) -> None:
    hashed = hash_password("dana", "Correct-horse-7\n")
    assert hashed.returncode == 0, hashed.stderr
    entry = json.loads(hashed.stdout)
    assert entry["name"] == "dana" and entry["password_hash"].startswith("scrypt$n=16384,r=8,p=1$")
    assert "Correct-horse-7" not in hashed.stdout
    users = tmp_path / "users.json"
    users.write_text(hashed.stdout)
    server = Server(tmp_path, "--allow-list", str(users))
    assert cli(tmp_path, "sync", server.url, "--username", "dana", "--password", "Correct-horse-7").returncode == 0
    wrong = cli(tmp_path, "sync", server.url, "--username", "dana", "--password", "correct-horse-7")
    assert (
        wrong.returncode == 1
        and "sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)" in wrong.stderr
    )
    server.stop()
    empty = hash_password("dana", "\n")
    assert empty.returncode == 2 and "empty password" in empty.stderr


def client_certificate(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A self-signed client certificate: PEM certificate, PEM key, and PKCS#12 (password ``p12-pw``)."""
    identity = TLSIdentity.create_self_signed([name])
    cert, key, p12 = tmp_path / f"{name}.pem", tmp_path / f"{name}.key", tmp_path / f"{name}.p12"
    cert.write_text(identity.certificate_pem)
    key.write_bytes(identity.export_private_key_pem())
    private_key = serialization.load_pem_private_key(identity.export_private_key_pem(), None)
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            name.encode(), private_key, identity.certificate, None,  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(b"p12-pw"),
        )
    )  # fmt: skip
    return cert, key, p12


def test_client_certificates_sign_in_with_or_without_an_allow_list(tmp_path: Path) -> None:
    cert, key, p12 = client_certificate(tmp_path, "till-2")
    stranger, stranger_key, _ = client_certificate(tmp_path, "stranger")
    server = Server(tmp_path, "--client-ca", str(cert))
    assert cli(tmp_path, "sync", server.url, "--client-cert", str(cert), "--client-key", str(key)).returncode == 0
    env = {**os.environ, "INVENTORY_SYNC_CLIENT_IDENTITY_PASSWORD": "p12-pw"}
    by_p12 = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "sync", server.url,
         "--client-identity", str(p12)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
    )  # fmt: skip
    assert by_p12.returncode == 0, by_p12.stderr
    without = cli(tmp_path, "sync", server.url)
    assert (
        without.returncode == 1
        and "sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)" in without.stderr
    )
    other = cli(tmp_path, "sync", server.url, "--client-cert", str(stranger), "--client-key", str(stranger_key))
    assert other.returncode == 1
    out = server.stop()
    assert [e["user"] for e in map(json.loads, out.splitlines()) if e["event"] == "connected"] == ["till-2", "till-2"]

    both = Server(tmp_path, "--client-ca", str(cert), "--allow-list", str(allow_list(tmp_path)))
    assert cli(tmp_path, "sync", both.url, *CREDENTIALS).returncode == 0  # no certificate: the password decides
    assert cli(tmp_path, "sync", both.url, "--client-cert", str(cert), "--client-key", str(key)).returncode == 0
    both.stop()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "serve needs --allow-list FILE or --client-ca FILE"),
        (["--no-auth", "--allow-list", "users.json"], "--no-auth lets anyone in"),
        (["--client-ca", "ca.pem", "--tls", "disabled"], "--client-ca needs TLS"),
        (["--client-ca", "missing.pem"], "missing.pem"),
    ],
)
def test_serve_authentication_options_that_cannot_work(tmp_path: Path, args: list[str], words: str) -> None:
    failed = server_cli(tmp_path, "serve", *args)
    assert failed.returncode == 2 and words in failed.stderr, failed.stderr
