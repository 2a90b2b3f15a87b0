"""``tools/make_certs.py``: a shop's CA, listener and client identities, used by ``serve`` and ``sync``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from engine.replication.tls import TLSIdentity
from tests.engine.cli.test_sync_commands import CLI, TIMEOUT, Server
from tests.litecore_peer.tls import mbedtls2_names_host
from tools.make_certs import CertificateAuthority, main

PASSWORD = "demo-p12-pw"


def test_the_certificates_let_serve_and_sync_check_each_other_through_the_ca(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert main(["--out", str(out), "--name", "127.0.0.1", "--client", "till-1", "--password", PASSWORD]) == 0
    for private in ("ca.key", "listener.p12", "client-till-1.p12"):
        assert stat.S_IMODE((out / private).stat().st_mode) == 0o600
    listener = TLSIdentity.from_pkcs12(out / "listener.p12", PASSWORD)
    assert listener.ip_addresses == ("127.0.0.1",) and not listener.is_self_signed

    env = {**os.environ, "INVENTORY_SYNC_IDENTITY_PASSWORD": PASSWORD,
           "INVENTORY_SYNC_CLIENT_IDENTITY_PASSWORD": PASSWORD}  # fmt: skip
    server = Server(tmp_path, "--tls", "imported", "--identity", str(out / "listener.p12"),
                    "--client-ca", str(out / "ca.pem"), env=env)  # fmt: skip

    def sync(ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--data-dir", str(tmp_path / "client"), "--user", "clerk", "sync", server.url,
             "--verify", "ca", "--ca-file", str(ca), *args],
            capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
        )  # fmt: skip

    client = ("--client-identity", str(out / "client-till-1.p12"))
    done = sync(out / "ca.pem", *client)
    assert done.returncode == 0, done.stderr
    without = sync(out / "ca.pem")
    assert (
        without.returncode == 1
        and "sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)" in without.stderr
    )
    (tmp_path / "other-ca.pem").write_bytes(CertificateAuthority.create("Another CA").pem)
    refused = sync(tmp_path / "other-ca.pem", *client)
    assert refused.returncode == 1 and "refused the server's certificate" in refused.stderr
    server.stop()


def test_an_existing_ca_is_reused(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--password", PASSWORD]
    assert main(args) == 0
    ca = (tmp_path / "ca.pem").read_bytes()
    assert main([*args, "--client", "till-2"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() == ca and (tmp_path / "client-till-2.p12").exists()


def test_as_a_script_it_needs_a_password(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "tools" / "make_certs.py"
    env = {k: v for k, v in os.environ.items() if k != "INVENTORY_SYNC_IDENTITY_PASSWORD"}
    failed = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert failed.returncode == 2 and "--password" in failed.stderr
    assert not (tmp_path / "ca.key").exists()


def test_a_listener_identity_names_its_addresses_as_couchbase_lite_3_matches_them() -> None:
    identity = CertificateAuthority.create().issue(["shop.local", "192.168.1.20"])
    assert identity.dns_names == ("shop.local", "192.168.1.20") and identity.ip_addresses == ("192.168.1.20",)
    assert mbedtls2_names_host(identity.certificate, "192.168.1.20")
    assert mbedtls2_names_host(identity.certificate, "shop.local")
