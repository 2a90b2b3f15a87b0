"""What a listener's zeroconf advert says, and how a browser turns it into a peer (no I/O).

A listener advertises ``_cblistservicesync._tcp.local.`` (the sample's service
type) with this TXT record (RFC 6763 §6: short lower-case keys, ``txtvers`` first):

========= =============================================================
``txtvers`` ``1``; a browser skips adverts of another version
``peer``    the database's stable peer ID, a UUID (``Database.peer_id``)
``db``      the database name in the URL (``ws://host:port/<db>``)
``tls``     ``1``: ``wss://``; ``0``: ``ws://``
``fp``      with ``tls=1`` only: the certificate's SHA-256, ``AB:CD:...``
``proto``   the BLIP subprotocols it speaks, comma-separated, preferred first
========= =============================================================

Addresses come from the advert's A and AAAA records; :func:`usable_addresses`
orders them by preference and :func:`peer_url` writes them into URLs (IPv6 in
brackets, a link-local zone as ``%25eth0``, RFC 6874).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from engine.replication import tuning

__all__ = [
    "SERVICE_TYPE",
    "TXT_VERSION",
    "Advert",
    "Peer",
    "decode_txt",
    "default_instance_name",
    "encode_txt",
    "normalize_fingerprint",
    "peer_url",
    "usable_addresses",
]

#: The sample's Bonjour service type. Its 17-character name is over RFC 6763's 15,
#: so registering it needs python-zeroconf's ``strict=False`` (browsing accepts it).
SERVICE_TYPE = "_cblistservicesync._tcp.local."
#: The version of the TXT record's keys; a browser skips adverts of any other.
TXT_VERSION = "1"
#: Longest instance name: one DNS label (RFC 6763 §4.1.1), less room for the
#: ``-2``... python-zeroconf appends when the name is taken.
MAX_INSTANCE_NAME_BYTES = 63 - 4
#: Longest database name advertised (a TXT string holds 255 bytes with its key).
MAX_DATABASE_NAME_BYTES = 200

_SUBPROTOCOL = re.compile(r"[A-Za-z0-9_]+\+[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Advert:
    """The TXT record of a listener: who it is and how to talk to it."""

    peer_id: str
    database: str
    #: the TLS certificate's SHA-256 (``AB:CD:...``); None for a plain ``ws://`` listener
    fingerprint: str | None = None
    protocols: tuple[str, ...] = tuning.SUBPROTOCOLS

    @property
    def tls(self) -> bool:
        """Whether the listener speaks ``wss://``."""
        return self.fingerprint is not None

    @property
    def scheme(self) -> str:
        """``wss`` for a TLS listener, else ``ws``."""
        return "wss" if self.tls else "ws"


def encode_txt(advert: Advert) -> dict[str, str]:
    """The TXT record of ``advert``, as python-zeroconf's ``properties``.

    Raises:
        ValueError: the advert cannot be encoded (a bad peer ID, database name,
            fingerprint or protocol list), with what is wrong.
    """
    checked = _checked(advert.peer_id, advert.database, advert.fingerprint, advert.protocols)
    txt = {"txtvers": TXT_VERSION, "peer": checked.peer_id, "db": checked.database}
    txt["tls"] = "1" if checked.tls else "0"
    if checked.fingerprint is not None:
        txt["fp"] = checked.fingerprint
    txt["proto"] = ",".join(checked.protocols)
    return txt


def decode_txt(properties: Mapping[bytes, bytes | None]) -> Advert:
    """Read a TXT record (python-zeroconf's ``ServiceInfo.properties``).

    Keys are case-insensitive (RFC 6763 §6.4); unknown keys are ignored.

    Raises:
        ValueError: a foreign or malformed advert (another TXT version, a key
            missing, a value that is not what it must be, no protocol in
            common with ours), with what is wrong.
    """
    txt: dict[str, str] = {}
    for raw_key, raw_value in properties.items():
        try:
            key = raw_key.decode("ascii").lower()
            value = None if raw_value is None else raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"TXT entry {raw_key!r} is not text") from None
        if value is not None:
            txt.setdefault(key, value)
    if txt.get("txtvers") != TXT_VERSION:
        raise ValueError(f"TXT version {txt.get('txtvers')!r}, not {TXT_VERSION!r}")
    missing = [key for key in ("peer", "db", "tls", "proto") if key not in txt]
    if missing:
        raise ValueError(f"TXT record without {', '.join(missing)}")
    if txt["tls"] not in ("0", "1"):
        raise ValueError(f"tls={txt['tls']!r} is neither 0 nor 1")
    fingerprint = txt.get("fp")
    if (txt["tls"] == "1") != (fingerprint is not None):
        raise ValueError("tls=1 needs a fingerprint (fp), and only tls=1 has one")
    protocols = tuple(txt["proto"].split(","))
    advert = _checked(txt["peer"], txt["db"], fingerprint, protocols)
    if not set(advert.protocols) & set(tuning.SUBPROTOCOLS):
        raise ValueError(f"no protocol in common: {txt['proto']!r}")
    return advert


def _checked(peer_id: str, database: str, fingerprint: str | None, protocols: tuple[str, ...]) -> Advert:
    try:
        canonical_id = str(uuid.UUID(peer_id))
    except ValueError:
        raise ValueError(f"peer ID {peer_id!r} is not a UUID") from None
    if peer_id.lower() != canonical_id:
        raise ValueError(f"peer ID {peer_id!r} is not a UUID in its usual form")
    if (
        not database
        or database.startswith("_")
        or "/" in database
        or not database.isprintable()
        or len(database.encode()) > MAX_DATABASE_NAME_BYTES
    ):
        raise ValueError(f"invalid database name {database!r}")
    if not protocols or not all(_SUBPROTOCOL.fullmatch(p) for p in protocols):
        raise ValueError(f"invalid protocol list {','.join(protocols)!r}")
    fingerprint = None if fingerprint is None else normalize_fingerprint(fingerprint)
    return Advert(canonical_id, database, fingerprint, protocols)


def normalize_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as ``AB:CD:...`` (32 upper-case hex pairs), from hex with or without colons.

    Raises:
        ValueError: not 32 bytes of hex.
    """
    digits = text.replace(":", "")
    if len(digits) != 64 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2)).upper()


def default_instance_name(user: str, machine: str | None = None) -> str:
    """A readable instance name, ``"<user> on <machine>"``, cut to fit one DNS label.

    ``machine`` defaults to this computer's host name without its domain.
    """
    host = machine if machine is not None else socket.gethostname().partition(".")[0]
    text = "".join(ch for ch in f"{user} on {host or 'this computer'}" if ch.isprintable())
    return text.encode()[:MAX_INSTANCE_NAME_BYTES].decode("utf-8", "ignore").strip() or "inventory"


# -- addresses and URLs -------------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def usable_addresses(addresses: Iterable[str]) -> list[str]:
    """Addresses a replicator can connect to, best first, each once.

    Order: IPv4 (not loopback or link-local), IPv6 global or unique-local,
    IPv4 link-local, IPv6 link-local with its zone, then loopback; within a
    rank the order given (python-zeroconf lists the latest first). Dropped:
    unspecified and multicast addresses, and link-local IPv6 without a zone
    (unusable: an advert received over IPv4 carries none). IPv4-mapped IPv6
    is written as IPv4; a numeric zone (python-zeroconf gives interface
    indexes) becomes the interface's name.
    """
    ranked: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for position, text in enumerate(addresses):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        rank = _rank(address)
        if rank is None:
            continue
        written = _with_zone_name(address)
        if written not in seen:
            seen.add(written)
            ranked.append((rank, position, written))
    return [written for _, _, written in sorted(ranked)]


def _rank(address: IPAddress) -> int | None:
    if address.is_unspecified or address.is_multicast:
        return None
    if address.is_loopback:
        return 4
    if address.is_link_local:
        if isinstance(address, ipaddress.IPv4Address):
            return 2
        return 3 if address.scope_id else None
    return 0 if isinstance(address, ipaddress.IPv4Address) else 1


def _with_zone_name(address: IPAddress) -> str:
    if not isinstance(address, ipaddress.IPv6Address) or not address.scope_id:
        return str(address)
    zone = address.scope_id
    if zone.isdigit():
        with contextlib.suppress(OSError):  # an index of no interface here: the number works as well
            zone = socket.if_indextoname(int(zone))
    return f"{str(address).partition('%')[0]}%{zone}"


def peer_url(scheme: str, address: str, port: int, database: str) -> str:
    """``ws://1.2.3.4:port/db``, ``ws://[2001:db8::1]:port/db``, ``wss://[fe80::1%25eth0]:port/db``."""
    host = address
    if ":" in address:
        bare, _, zone = address.partition("%")
        host = f"[{bare}%25{quote(zone, safe='')}]" if zone else f"[{bare}]"
    return f"{scheme}://{host}:{port}/{quote(database, safe='')}"


# -- peers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """A listener found on the network, one per peer ID.

    ``name``, ``port`` and ``addresses`` come from its latest advert; ``urls``
    lists every way to reach it, the preferred first (adverts of the same peer
    under other names follow the latest one's).
    """

    peer_id: str
    name: str
    database: str
    fingerprint: str | None
    protocols: tuple[str, ...]
    port: int
    addresses: tuple[str, ...]
    urls: tuple[str, ...]

    @property
    def tls(self) -> bool:
        """Whether it speaks ``wss://`` (then ``fingerprint`` is its certificate's SHA-256)."""
        return self.fingerprint is not None

    @property
    def url(self) -> str:
        """The preferred URL."""
        return self.urls[0]

    def to_json(self) -> dict[str, object]:
        """The peer as the command line's JSON records show it."""
        return {
            "name": self.name,
            "peer_id": self.peer_id,
            "database": self.database,
            "urls": list(self.urls),
            "tls": self.tls,
            "fingerprint": self.fingerprint,
            "protocols": list(self.protocols),
        }
