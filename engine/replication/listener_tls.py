"""The listener's TLS modes (issue 12), and the identity generated once per user database.

- ``disabled``: plain ``ws://``; the listener warns that passwords cross the network in clear.
- ``anonymous``: a fresh self-signed identity at each start (Couchbase Lite's anonymous identity,
  which on Linux is not kept either).
- ``imported``: a PKCS#12 file and its password (the sample's ``listener-cert-pkey.p12``).
- ``generated``: a self-signed identity created once for a user database and kept in its
  directory (``listener-identity.pem``, certificate and private key, mode 0600), so that its
  fingerprint stays the same across restarts and peers can pin it or trust it on first use.

A generated identity is never replaced on its own: a new one means a new
fingerprint, and every peer that pinned or remembered the old one would refuse
the listener. When the machine's addresses change, it keeps serving (pinning,
trust on first use and Couchbase Lite's self-signed mode do not look at host
names) and an info line names the addresses it does not cover. When it nears
its end (30 days) or has expired, a warning says so: Couchbase Lite's
self-signed mode refuses an expired certificate, pinning and trust on first use
do not. :meth:`GeneratedIdentity.renew` replaces it on request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import ipaddress
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import ifaddr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.private_files import write_private_file
from engine.replication.errors import ConfigurationError
from engine.replication.tls import KeyType, TLSIdentity, default_names

__all__ = [
    "GENERATED_IDENTITY_FILE",
    "GENERATED_VALIDITY",
    "RENEWAL_WARNING",
    "GeneratedIdentity",
    "ListenerTLSMode",
    "listener_identity",
    "serving_addresses",
]

log = logging.getLogger(__name__)

GENERATED_IDENTITY_FILE = "listener-identity.pem"
#: A generated identity's validity: 825 days, the longest Apple platforms accept for a TLS server
#: certificate; long, because renewing changes the fingerprint peers rely on.
GENERATED_VALIDITY = dt.timedelta(days=825)
#: Warn when a generated identity ends within this time.
RENEWAL_WARNING = dt.timedelta(days=30)


class ListenerTLSMode(enum.Enum):
    """How the listener gets its TLS identity."""

    DISABLED = "disabled"
    ANONYMOUS = "anonymous"
    IMPORTED = "imported"
    GENERATED = "generated"


class GeneratedIdentity:
    """The self-signed identity kept in a user database's directory."""

    def __init__(self, database_dir: Path) -> None:
        self.path = Path(database_dir) / GENERATED_IDENTITY_FILE

    @property
    def exists(self) -> bool:
        """Whether an identity was generated for this database."""
        return self.path.is_file()

    def load(self) -> TLSIdentity | None:
        """The generated identity, or None when there is none yet.

        Raises:
            ConfigurationError: the file is damaged (renew to replace it).
        """
        try:
            data = self.path.read_bytes()
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigurationError(f"{self.path}: cannot read the identity: {exc.strerror or exc}") from None
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            log.warning("%s can be read by other users of this computer; it holds a private key", self.path)
        try:
            chain = x509.load_pem_x509_certificates(data)
            key = serialization.load_pem_private_key(data, None)
            return TLSIdentity(key, chain)  # type: ignore[arg-type]  # checked by TLSIdentity
        except (ValueError, TypeError, ConfigurationError) as exc:
            raise ConfigurationError(f"{self.path}: damaged identity ({exc}); renew it to make a new one") from None

    def load_or_create(
        self, addresses: Sequence[str] | None = None, *, key_type: KeyType = KeyType.EC_P256
    ) -> TLSIdentity:
        """The generated identity, created first if there is none (naming ``addresses``).

        Raises:
            ConfigurationError: the file is damaged.
            OSError: the directory cannot be written.
        """
        identity = self.load()
        if identity is None:
            identity = self._create(addresses, key_type)
            log.info("generated a TLS identity in %s, SHA-256 %s", self.path, identity.fingerprint)
        else:
            self._check(identity, addresses)
        return identity

    def renew(self, addresses: Sequence[str] | None = None, *, key_type: KeyType | None = None) -> TLSIdentity:
        """Replace the identity with a new key and certificate (a new fingerprint).

        ``key_type`` None keeps the kind of key the old identity had (EC P-256 if none).
        """
        old = None
        with contextlib.suppress(ConfigurationError):
            old = self.load()
        if key_type is None:
            was_rsa = old is not None and isinstance(old.certificate.public_key(), rsa.RSAPublicKey)
            key_type = KeyType.RSA_2048 if was_rsa else KeyType.EC_P256
        identity = self._create(addresses, key_type)
        log.info(
            "renewed the TLS identity in %s: SHA-256 %s (was %s)",
            self.path,
            identity.fingerprint,
            old.fingerprint if old else "none",
        )
        return identity

    def _create(self, addresses: Sequence[str] | None, key_type: KeyType) -> TLSIdentity:
        identity = TLSIdentity.create_self_signed(
            addresses if addresses is not None else serving_addresses(), key_type=key_type, validity=GENERATED_VALIDITY
        )
        self._write(identity)
        return identity

    def _write(self, identity: TLSIdentity) -> None:
        """Write certificate and key to a new 0600 file, then move it into place in one step."""
        write_private_file(self.path, identity.certificate_pem.encode() + identity.export_private_key_pem())

    def _check(self, identity: TLSIdentity, addresses: Sequence[str] | None) -> None:
        now = dt.datetime.now(dt.UTC)
        if identity.is_expired(now):
            log.warning(
                "the listener's TLS identity expired on %s: Couchbase Lite peers in self-signed mode refuse it "
                "(peers that pinned it or trust it on first use still connect); renew it to get a new one",
                f"{identity.not_valid_after:%Y-%m-%d}",
            )
        elif identity.not_valid_after - now < RENEWAL_WARNING:
            log.warning(
                "the listener's TLS identity expires on %s; renewing it changes its fingerprint, "
                "which peers that pinned it must accept again",
                f"{identity.not_valid_after:%Y-%m-%d}",
            )
        current = addresses if addresses is not None else serving_addresses()
        missing = [a for a in current if not identity.names_address(a)]
        if missing:
            log.info(
                "the listener's TLS identity does not name %s (peers that check host names must use a name it has; "
                "renewing names the current addresses and changes the fingerprint)",
                ", ".join(missing),
            )


def serving_addresses(host: str | None = None) -> list[str]:
    """What an identity for a listener on ``host`` (None: every interface) should name.

    The host name (and ``<name>.local``), ``localhost``, and the address given
    or every interface address (loopback included, IPv6 link-local left out:
    its zone cannot be named in a certificate).
    """
    names = default_names()
    if host and host.strip("[]") not in ("0.0.0.0", "::"):  # noqa: S104 (a comparison, not a bind)
        return _unique([*names, host.strip("[]")])
    addresses: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                if not ipaddress.ip_address(text).is_link_local:
                    addresses.append(text)
            except ValueError:
                continue
    return _unique([*names, *addresses])


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def listener_identity(
    mode: ListenerTLSMode | str,
    *,
    database_dir: Path | None = None,
    identity_file: Path | None = None,
    password: str | bytes | None = None,
    host: str | None = None,
) -> TLSIdentity | None:
    """The identity a listener on ``host`` (None: every interface) serves in ``mode``; None when disabled.

    ``imported`` needs ``identity_file`` (PKCS#12) and its ``password``;
    ``generated`` needs the user database's ``database_dir``.

    Raises:
        ConfigurationError: an unknown mode, a missing file or directory, or an identity that cannot be read.
    """
    try:
        mode = ListenerTLSMode(mode)
    except ValueError:
        names = ", ".join(m.value for m in ListenerTLSMode)
        raise ConfigurationError(f"unknown TLS mode {mode!r}; use one of {names}") from None
    if mode is ListenerTLSMode.DISABLED:
        return None
    if mode is ListenerTLSMode.ANONYMOUS:
        return TLSIdentity.create_self_signed(serving_addresses(host))
    if mode is ListenerTLSMode.IMPORTED:
        if identity_file is None:
            raise ConfigurationError("TLS mode 'imported' needs a PKCS#12 identity file")
        return TLSIdentity.from_pkcs12(Path(identity_file), password)
    if database_dir is None:
        raise ConfigurationError("TLS mode 'generated' needs the database's directory")
    return GeneratedIdentity(database_dir).load_or_create(serving_addresses(host))
