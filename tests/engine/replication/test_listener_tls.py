"""The listener's TLS modes and the identity generated once per user database."""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.replication.errors import ConfigurationError
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.listener_tls import (
    GENERATED_IDENTITY_FILE,
    GeneratedIdentity,
    ListenerTLSMode,
    listener_identity,
    serving_addresses,
)
from engine.replication.tls import KeyType, TLSIdentity
from tests.conftest import needs_shared
from tests.engine.replication.conftest import Peers
from tests.engine.replication.tls_helpers import SEED_FINGERPRINT, SEED_P12, SEED_PASSWORD


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that lets everyone read new files: the key file must still be private."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_generated_identity_is_created_0600_and_reused(tmp_path: Path, open_umask: None) -> None:
    store = GeneratedIdentity(tmp_path)
    assert store.load() is None and not store.exists
    first = store.load_or_create(["127.0.0.1", "localhost"])
    assert store.path == tmp_path / GENERATED_IDENTITY_FILE
    assert mode_of(store.path) == 0o600
    assert first.is_self_signed and first.names_address("127.0.0.1")
    again = GeneratedIdentity(tmp_path).load_or_create(["127.0.0.1", "localhost"])  # as after a restart
    assert again.fingerprint == first.fingerprint
    assert [p.name for p in tmp_path.iterdir()] == [GENERATED_IDENTITY_FILE]  # no temporary file left


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_renew_makes_a_new_identity_of_the_same_kind(tmp_path: Path, open_umask: None) -> None:
    store = GeneratedIdentity(tmp_path)
    first = store.load_or_create(["127.0.0.1"], key_type=KeyType.RSA_2048)
    renewed = store.renew(["127.0.0.1", "10.1.2.3"])
    assert renewed.fingerprint != first.fingerprint
    assert "RSA" in type(renewed.certificate.public_key()).__name__
    assert renewed.names_address("10.1.2.3")
    assert mode_of(store.path) == 0o600
    loaded = store.load()
    assert loaded is not None and loaded.fingerprint == renewed.fingerprint


def test_generated_identity_lasts_longer_than_anonymous_ones(tmp_path: Path) -> None:
    generated = GeneratedIdentity(tmp_path).load_or_create(["127.0.0.1"])
    assert generated.not_valid_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)


def test_a_damaged_identity_file_is_a_clear_error_and_renew_replaces_it(tmp_path: Path) -> None:
    store = GeneratedIdentity(tmp_path)
    store.path.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(ConfigurationError, match=r"damaged identity.*renew"):
        store.load_or_create()
    assert store.renew(["127.0.0.1"]).is_self_signed


def test_an_identity_near_its_end_or_for_other_addresses_is_kept_with_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = GeneratedIdentity(tmp_path)
    old = TLSIdentity.create_self_signed(["10.0.0.5"], now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    store._write(old)  # as if generated 400 days ago on another network
    with caplog.at_level(logging.INFO, logger="engine.replication.listener_tls"):
        kept = store.load_or_create(["127.0.0.1"])
    assert kept.fingerprint == old.fingerprint  # the fingerprint peers pinned does not change on its own
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "expired on" in messages and "does not name 127.0.0.1" in messages
    assert "PRIVATE" not in messages


def test_listener_modes(tmp_path: Path) -> None:
    assert listener_identity("disabled") is None
    first, second = listener_identity("anonymous", host="127.0.0.1"), listener_identity(ListenerTLSMode.ANONYMOUS)
    assert first is not None and second is not None and first.fingerprint != second.fingerprint  # fresh at each start
    assert first.names_address("127.0.0.1") and first.names_address("localhost")
    generated = listener_identity("generated", database_dir=tmp_path)
    again = listener_identity("generated", database_dir=tmp_path)
    assert generated is not None and again is not None and generated.fingerprint == again.fingerprint
    with pytest.raises(ConfigurationError, match="needs a PKCS#12"):
        listener_identity("imported")
    with pytest.raises(ConfigurationError, match="needs the database"):
        listener_identity("generated")
    with pytest.raises(ConfigurationError, match="unknown TLS mode 'tls'; use one of disabled, anonymous"):
        listener_identity("tls")


@needs_shared(SEED_P12)
def test_imported_mode_loads_the_sample_identity() -> None:
    identity = listener_identity("imported", identity_file=SEED_P12, password=SEED_PASSWORD)
    assert identity is not None and identity.fingerprint == SEED_FINGERPRINT


def test_serving_addresses() -> None:
    on_one = serving_addresses("127.0.0.1")
    assert "127.0.0.1" in on_one and "localhost" in on_one
    on_all = serving_addresses()
    assert "127.0.0.1" in on_all and not any(a.startswith("fe80") for a in on_all)
    assert serving_addresses("0.0.0.0") == on_all


@pytest.mark.asyncio
async def test_listener_urls_say_wss_with_tls_and_plain_ws_warns(
    peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    db = peers.database("a")
    identity = TLSIdentity.create_self_signed(["127.0.0.1"])
    with caplog.at_level(logging.INFO, logger="engine.replication.listener"):
        secure = await peers.listener(db, tls=identity)
        plain = await peers.listener(db)
    assert secure.urls[0].startswith("wss://127.0.0.1:") and plain.urls[0].startswith("ws://127.0.0.1:")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["TLS is disabled: passwords and documents cross the network in clear (ws://)"]
    assert any(identity.fingerprint in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_client_certificate_roots_need_tls(peers: Peers) -> None:
    class WithRoots:
        client_roots = (TLSIdentity.create_self_signed(["ca"]).certificate,)

        def __call__(self, _request: object) -> None:
            return None

    listener = URLEndpointListener(
        ListenerConfiguration(peers.database("a"), host="127.0.0.1", authenticator=WithRoots())
    )
    with pytest.raises(ConfigurationError, match="client certificates need TLS"):
        await listener.start()
