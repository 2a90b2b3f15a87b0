"""Settings: stored per user (a local document), validated in words, the identity password never stored."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.userdata import open_database
from inventory_qt.settings import (
    SETTINGS_DOC_ID,
    ListenerSettings,
    ReplicatorSettings,
    Settings,
    TlsMode,
    Validation,
    load_settings,
    save_settings,
    validate,
)


def test_settings_round_trip_without_the_identity_password(tmp_path: Path) -> None:
    settings = Settings(
        ListenerSettings(TlsMode.IMPORTED, "/x/id.p12", "s3cret", 4984, "/x/allow.json", True, False, False),
        ReplicatorSettings(Validation.PINNED, "/x/peer.pem", "", True),
        ("ws://10.0.0.2:4984/userdb",),
    )
    assert "s3cret" not in repr(settings)
    with open_database(tmp_path / "db") as db:
        assert load_settings(db) == Settings()
        save_settings(db, settings)
        local = db.get_local(SETTINGS_DOC_ID)
        assert local is not None and "s3cret" not in str(local.body)
        loaded = load_settings(db)
    assert loaded == settings and loaded.listener.identity_password == ""
    assert Settings.from_dict(
        {"listener": {"port": "many", "tls_mode": "weird"}, "peers": [1, "ws://a:1/db"]}
    ) == Settings(peers=("ws://a:1/db",))


def test_validation_says_what_cannot_work(tmp_path: Path) -> None:
    assert validate(Settings()) == []
    allow = tmp_path / "allow.json"
    allow.write_text('{"name": "bob", "password": ""}\n')
    bad = Settings(
        ListenerSettings(TlsMode.IMPORTED, str(tmp_path / "missing.p12"), port=70000, allow_list=str(allow)),
        ReplicatorSettings(Validation.CA, ca_file=""),
    )
    problems = validate(bad)
    assert any(p.startswith("Port must be from 0") for p in problems)
    assert any(p.startswith("Identity file:") and "is not a file" in p for p in problems)
    assert any(p.startswith("Allow list:") and "empty password" in p for p in problems)
    assert "CA file: choose a file." in problems
    allow.write_text('{"name": "bob", "password": "pw"}\n')
    identity = tmp_path / "id.p12"
    identity.write_bytes(b"x")
    fixed = dataclasses.replace(
        bad,
        listener=dataclasses.replace(bad.listener, port=4984, identity_file=str(identity)),
        replicator=ReplicatorSettings(Validation.TOFU),
    )
    assert validate(fixed) == ["Identity file: enter its password."]
