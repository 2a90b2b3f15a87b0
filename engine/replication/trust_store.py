"""Trust on first use: the certificate fingerprint remembered for each peer, as SSH's ``known_hosts``.

A peer is remembered under a key: its peer ID when discovery found it
(``peer 6f1c...``, :func:`peer_id_key`: it keeps its trust when it moves to
another address or port, and an impostor advertising its ID with another key
is refused), else its host and port (``192.168.1.5:4984``, ``[fe80::1]:4984``,
:func:`peer_key`). The store is a small JSON file::

    {"version": 1, "peers": {"192.168.1.5:4984": {"sha256": "5C:94:...", "first_seen": "2026-12-01T10:00:00Z",
                                                  "subject": "CN=shop-laptop,O=Inventory Sync"}}}

Each change re-reads the file (another process may have added a peer),
writes a new file (0600) and renames it over the old one, so a reader never
sees half a file. Dates are not checked: what is trusted is the certificate
itself, whatever its validity period.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.json_codec import loads, pretty
from engine.private_files import write_private_file
from engine.replication.errors import ConfigurationError
from engine.replication.tls import parse_fingerprint

__all__ = [
    "TRUST_STORE_FILE",
    "TrustStore",
    "TrustedPeer",
    "key_from_text",
    "key_to_text",
    "peer_id_key",
    "peer_key",
    "trust_key",
]

#: The store's usual name inside the app's data directory.
TRUST_STORE_FILE = "trusted-peers.json"
_VERSION = 1


def peer_key(host: str, port: int) -> str:
    """``host:port`` with the host in lower case, an IPv6 address compressed and in brackets."""
    name = host.strip().strip("[]").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return f"{name}:{port}"
    return f"[{address.compressed}]:{port}" if address.version == 6 else f"{address.compressed}:{port}"


def peer_id_key(peer_id: str) -> str:
    """The key of a peer found by discovery: its stable peer ID."""
    return f"{_PEER_ID_PREFIX}{peer_id.strip().lower()}"


def trust_key(host: str, port: int, peer_id: str | None = None) -> str:
    """The key a connection's certificate is remembered under: the peer ID if known, else host and port."""
    return peer_id_key(peer_id) if peer_id else peer_key(host, port)


_PEER_ID_PREFIX = "peer "


def key_to_text(key: str) -> str:
    """A key as people type it: ``HOST:PORT``, or the peer ID."""
    return key.removeprefix(_PEER_ID_PREFIX)


def key_from_text(text: str) -> str:
    """The key for ``HOST:PORT`` (IPv6 in brackets) or a peer ID, as :func:`key_to_text` writes them.

    Raises:
        ConfigurationError: neither.
    """
    host, sep, port = text.strip().rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536 and (":" not in host or host.startswith("[")):
        return peer_key(host, int(port))
    if text.strip() and all(c.isalnum() or c == "-" for c in text.strip()):
        return peer_id_key(text)
    raise ConfigurationError(f"not HOST:PORT or a peer ID: {text!r} (IPv6 hosts in brackets: [fe80::1]:4984)")


@dataclass(frozen=True, slots=True)
class TrustedPeer:
    """A peer's remembered certificate."""

    key: str
    fingerprint: str
    first_seen: str
    subject: str | None = None


class TrustStore:
    """The fingerprints trusted on first use, in a JSON file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TrustStore({str(self.path)!r})"

    def get(self, key: str) -> TrustedPeer | None:
        """The certificate remembered under ``key`` (:func:`trust_key`), or None.

        Raises:
            ConfigurationError: the file is not a trust store.
        """
        return self._read().get(key)

    def peers(self) -> list[TrustedPeer]:
        """Every remembered peer, sorted by key."""
        return sorted(self._read().values(), key=lambda peer: peer.key)

    def remember(self, key: str, fingerprint: str, *, subject: str | None = None) -> TrustedPeer:
        """Trust ``fingerprint`` for a peer seen for the first time; return what is trusted now.

        A peer already known keeps its entry (another connection may have come
        first): the caller compares the returned fingerprint with what it saw.
        """
        with self._lock:
            peers = self._read()
            if key not in peers:
                peers[key] = TrustedPeer(key, parse_fingerprint(fingerprint), _now(), subject)
                self._write(peers)
            return peers[key]

    def accept(self, key: str, fingerprint: str, *, subject: str | None = None) -> TrustedPeer:
        """Trust ``fingerprint`` under ``key`` from now on, replacing what was remembered."""
        with self._lock:
            peers = self._read()
            peers[key] = TrustedPeer(key, parse_fingerprint(fingerprint), _now(), subject)
            self._write(peers)
            return peers[key]

    def forget(self, key: str) -> bool:
        """Forget the peer under ``key`` (its next certificate is trusted on first use again); whether it was known."""
        with self._lock:
            peers = self._read()
            if peers.pop(key, None) is None:
                return False
            self._write(peers)
            return True

    def _read(self) -> dict[str, TrustedPeer]:
        try:
            data = loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{self.path}: cannot read the trusted peers ({exc}); fix or remove it") from None
        try:
            entries: dict[str, Any] = data["peers"]
            return {
                key: TrustedPeer(
                    key, parse_fingerprint(entry["sha256"]), str(entry["first_seen"]), entry.get("subject")
                )
                for key, entry in entries.items()
            }
        except (TypeError, KeyError, AttributeError, ConfigurationError):
            raise ConfigurationError(f"{self.path}: not a trusted-peers file; fix or remove it") from None

    def _write(self, peers: dict[str, TrustedPeer]) -> None:
        document = {
            "version": _VERSION,
            "peers": {
                key: {"sha256": peer.fingerprint, "first_seen": peer.first_seen, "subject": peer.subject}
                for key, peer in sorted(peers.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(self.path, (pretty(document) + "\n").encode())


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
