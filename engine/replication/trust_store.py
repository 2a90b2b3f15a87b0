"""Trust on first use: the certificate fingerprint remembered for each peer, as SSH's ``known_hosts``.

Peers are keyed by host and port (``192.168.1.5:4984``, ``[fe80::1]:4984``)
until discovery gives them a stable ID. The store is a small JSON file::

    {"version": 1, "peers": {"192.168.1.5:4984": {"sha256": "5C:94:...", "first_seen": "2026-12-01T10:00:00Z",
                                                  "subject": "CN=shop-laptop,O=Inventory Sync"}}}

Each change re-reads the file (another process may have added a peer),
writes a new file (0600) and renames it over the old one, so a reader never
sees half a file. Dates are not checked: what is trusted is the certificate
itself, whatever its validity period.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.json_codec import loads, pretty
from engine.replication.errors import ConfigurationError
from engine.replication.tls import parse_fingerprint

__all__ = ["TRUST_STORE_FILE", "TrustStore", "TrustedPeer", "peer_key"]

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

    def get(self, host: str, port: int) -> TrustedPeer | None:
        """The certificate remembered for ``host:port``, or None.

        Raises:
            ConfigurationError: the file is not a trust store.
        """
        return self._read().get(peer_key(host, port))

    def peers(self) -> list[TrustedPeer]:
        """Every remembered peer, sorted by key."""
        return sorted(self._read().values(), key=lambda peer: peer.key)

    def remember(self, host: str, port: int, fingerprint: str, *, subject: str | None = None) -> TrustedPeer:
        """Trust ``fingerprint`` for a peer seen for the first time; return what is trusted now.

        A peer already known keeps its entry (another connection may have come
        first): the caller compares the returned fingerprint with what it saw.
        """
        key = peer_key(host, port)
        with self._lock:
            peers = self._read()
            if key not in peers:
                peers[key] = TrustedPeer(key, parse_fingerprint(fingerprint), _now(), subject)
                self._write(peers)
            return peers[key]

    def accept(self, host: str, port: int, fingerprint: str, *, subject: str | None = None) -> TrustedPeer:
        """Trust ``fingerprint`` for ``host:port`` from now on, replacing what was remembered."""
        key = peer_key(host, port)
        with self._lock:
            peers = self._read()
            peers[key] = TrustedPeer(key, parse_fingerprint(fingerprint), _now(), subject)
            self._write(peers)
            return peers[key]

    def forget(self, host: str, port: int) -> bool:
        """Forget ``host:port`` (its next certificate is trusted on first use again); whether it was known."""
        key = peer_key(host, port)
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
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(pretty(document) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
