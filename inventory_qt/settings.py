"""The app's settings, stored per user in a local (never replicated) document of the user's database.

Listener: TLS mode, identity file and its password, port, allow list, read-only,
delta sync, advertising. Replicator: how a peer's certificate is validated
(self-signed, CA, pinned, trust on first use), the pinned certificate or CA
file, auto-connecting to discovered peers. Also the peers added by hand, so
that the Browser tab lists them again at the next sign-in.

The identity file's password is a secret: it is kept in memory for the
session (as the sign-in password is) and never written to disk nor shown by
``repr``. :func:`validate` says in words what cannot work; the TLS and
discovery values are stored and checked here and handed to the engine in
:mod:`inventory_qt.engine_config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.database import Database
from engine.errors import EngineError
from engine.replication.auth import load_allow_list

__all__ = [
    "SETTINGS_DOC_ID",
    "ListenerSettings",
    "ReplicatorSettings",
    "Settings",
    "TlsMode",
    "Validation",
    "load_settings",
    "save_settings",
    "validate",
]

#: The local document holding the settings (local documents never replicate).
SETTINGS_DOC_ID = "inventory-app/settings"
_VERSION = 1


class TlsMode(StrEnum):
    """How the listener offers TLS (the security issue's listener modes)."""

    DISABLED = "disabled"  #: plain ws://
    ANONYMOUS = "anonymous"  #: a self-signed certificate made for each start
    GENERATED = "generated"  #: a self-signed identity made once and kept (a stable fingerprint)
    IMPORTED = "imported"  #: an identity (PKCS#12) file chosen by the user


class Validation(StrEnum):
    """How the replicator checks a listener's certificate (the security issue's validation modes)."""

    SELF_SIGNED = "self-signed"  #: accept a self-signed certificate
    CA = "ca"  #: a chain to the CA file
    PINNED = "pinned"  #: exactly the pinned certificate
    TOFU = "tofu"  #: trust on first use, then the same certificate only


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """How the Listener tab serves the user's inventory."""

    #: secure by default, as ``inventory-sync serve``: a certificate generated once and kept with the
    #: user's database, so its fingerprint stays the same across restarts
    tls_mode: TlsMode = TlsMode.GENERATED
    identity_file: str = ""
    #: the identity file's password: memory only (not stored, not in repr)
    identity_password: str = field(default="", repr=False, compare=False)
    port: int = 0
    #: users allowed in (JSON lines or array of {name, password}); "" lets in only
    #: the signed-in user, with the same password
    allow_list: str = ""
    read_only: bool = False
    delta_sync: bool = True
    advertise: bool = True


@dataclass(frozen=True, slots=True)
class ReplicatorSettings:
    """How the Browser tab connects to peers."""

    validation: Validation = Validation.TOFU
    pinned_certificate: str = ""
    ca_file: str = ""
    auto_connect: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the Settings dialog edits, and the peers added by hand."""

    listener: ListenerSettings = ListenerSettings()
    replicator: ReplicatorSettings = ReplicatorSettings()
    peers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The stored form (without the identity password)."""
        listener = dataclasses.asdict(self.listener)
        del listener["identity_password"]
        return {
            "version": _VERSION,
            "listener": listener,
            "replicator": dataclasses.asdict(self.replicator),
            "peers": list(self.peers),
        }

    @classmethod
    def from_dict(cls, data: object) -> Settings:
        """Read the stored form; unknown or malformed values fall back to their defaults."""
        if not isinstance(data, dict):
            return cls()
        listener = _read(ListenerSettings, data.get("listener"), {"tls_mode": TlsMode})
        replicator = _read(ReplicatorSettings, data.get("replicator"), {"validation": Validation})
        raw_peers = data.get("peers")
        peers = tuple(p for p in raw_peers if isinstance(p, str)) if isinstance(raw_peers, list) else ()
        return cls(listener, replicator, peers)


def _read(kind: Any, data: object, enums: dict[str, type[StrEnum]]) -> Any:
    default = kind()
    if not isinstance(data, dict):
        return default
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name not in data or f.name == "identity_password":
            continue
        value, wanted = data[f.name], getattr(default, f.name)
        if f.name in enums:
            try:
                values[f.name] = enums[f.name](value)
            except ValueError:
                continue
        elif type(value) is type(wanted):
            values[f.name] = value
    return dataclasses.replace(default, **values)


def load_settings(db: Database) -> Settings:
    """The settings stored in ``db`` (the defaults when none are). Blocking: call off the GUI thread."""
    local = db.get_local(SETTINGS_DOC_ID)
    return Settings() if local is None else Settings.from_dict(local.body)


def save_settings(db: Database, settings: Settings) -> None:
    """Store ``settings`` in ``db`` (one local document). Blocking: call off the GUI thread."""
    db.put_local(SETTINGS_DOC_ID, settings.to_dict())


def _file_problem(label: str, path: str) -> str | None:
    if not path:
        return f"{label}: choose a file"
    file = Path(path).expanduser()
    if not file.is_file():
        return f"{label}: {path} is not a file"
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        return f"{label}: {path} cannot be read ({exc.strerror or exc})"
    return None


def validate(settings: Settings) -> list[str]:
    """What in ``settings`` cannot work, one sentence each (empty: all fine).

    Reads the files named (they are small): the allow list must load, the
    identity, pinned certificate and CA files must be readable when their mode
    needs them. Blocking for as long as reading those files takes.
    """
    problems: list[str] = []
    listener, replicator = settings.listener, settings.replicator
    if not 0 <= listener.port <= 65535:
        problems.append(f"Port must be from 0 (any free port) to 65535, not {listener.port}.")
    if listener.tls_mode is TlsMode.IMPORTED:
        problem = _file_problem("Identity file", listener.identity_file)
        if problem:
            problems.append(problem + ".")
        elif not listener.identity_password:
            problems.append("Identity file: enter its password.")
    if listener.allow_list:
        try:
            load_allow_list(Path(listener.allow_list).expanduser())
        except EngineError as exc:
            problems.append(f"Allow list: {exc}.")
    if replicator.validation is Validation.PINNED:
        problem = _file_problem("Pinned certificate", replicator.pinned_certificate)
        if problem:
            problems.append(problem + ".")
    if replicator.validation is Validation.CA:
        problem = _file_problem("CA file", replicator.ca_file)
        if problem:
            problems.append(problem + ".")
    return problems
