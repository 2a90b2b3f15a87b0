"""Authentication on the opening handshake (protocol §1 Authentication).

Client side, :class:`BasicAuthenticator` adds ``Authorization: Basic ...`` to
the upgrade request. Listener side, like Couchbase Lite's listener, one
authenticator decides:

- :class:`PasswordAuthenticator`: Basic credentials against an allow list
  (:mod:`engine.replication.passwords`: plain or scrypt-hashed entries, checks
  of equal cost on worker threads) or a check function;
- :class:`ClientCertificateAuthenticator`: a TLS client certificate that chains
  to given roots, optionally also accepted by a callback;
- :class:`CertificateOrPasswordAuthenticator`: either of the two;
- :data:`NO_AUTHENTICATION`: the explicit choice to let anyone in.

A refusal is HTTP 401 with ``WWW-Authenticate: Basic realm=..., charset="UTF-8"``
before the WebSocket opens (Couchbase Lite clients send their password only
after that challenge, protocol §9), so nothing of the database reaches the
client. :func:`listener_authenticator` turns a listener's choice into its
handshake hook, with a :class:`~engine.replication.throttle.SignInThrottle`
around it. Passwords are compared in constant time and never logged.

Client certificates: Python's ``ssl`` verifies a client's certificate only
against the roots loaded into the listener's context, and has no verify
callback (Python 3.11). So the TLS layer checks the chain (signatures, dates,
key usage) against :attr:`ClientCertificateAuthenticator.client_roots`, and
the callback can only narrow that down. Self-signed client certificates are
trusted by listing each one as a root.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from engine.replication.blip.websocket import Authenticator, HandshakeRequest
from engine.replication.errors import ConfigurationError, HTTPStatusError
from engine.replication.passwords import (
    PASSWORD_CHECKS,
    AllowedUser,
    CheckPool,
    PasswordTable,
    allow_list_entry,
    hash_password,
    load_allow_list,
)
from engine.replication.throttle import SignInThrottle, ThrottledAuthenticator

if TYPE_CHECKING:  # cryptography loads at first use (see engine/replication/tls.py)
    from cryptography import x509

__all__ = [
    "NO_AUTHENTICATION",
    "REALM",
    "AllowedUser",
    "BasicAuthenticator",
    "CertificateOrPasswordAuthenticator",
    "ClientCertificateAuthenticator",
    "OpenAccess",
    "PasswordAuthenticator",
    "allow_list_entry",
    "hash_password",
    "listener_authenticator",
    "load_allow_list",
    "load_certificates",
    "parse_basic",
    "unauthorized",
]

log = logging.getLogger(__name__)

REALM = "Inventory Sync"


class BasicAuthenticator:
    """A user name and password for the replicator's handshake."""

    def __init__(self, username: str, password: str) -> None:
        if ":" in username:
            raise ValueError("a user name for Basic authentication cannot contain ':'")
        self.username = username
        self._password = password

    def headers(self) -> dict[str, str]:
        """The header to send."""
        token = base64.b64encode(f"{self.username}:{self._password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def __repr__(self) -> str:
        return f"BasicAuthenticator(username={self.username!r}, password=<hidden>)"


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """Return ``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


def unauthorized(reason: str = "unauthorized") -> HTTPStatusError:
    """The 401 refusal, with the Basic challenge (protocol §1, §9)."""
    return HTTPStatusError(401, reason, headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})


class OpenAccess:
    """The explicit choice of a listener without authentication: anyone who reaches it may read and write."""

    def __call__(self, _request: HandshakeRequest) -> None:
        return None

    def __repr__(self) -> str:
        return "NO_AUTHENTICATION"


#: Give this as a listener's authenticator to let anyone in (trusted test networks only).
NO_AUTHENTICATION: Final = OpenAccess()


class PasswordAuthenticator:
    """Accepts handshakes whose Basic credentials pass ``check``; the principal is the user name.

    ``check(user, password)`` runs on a worker thread of ``pool`` (bounded; a
    full pool answers 503), so scrypt work never blocks the event loop. Build
    one from an allow list with :meth:`from_allow_list` or :meth:`from_users`.
    """

    def __init__(self, check: Callable[[str, str], bool], *, pool: CheckPool | None = None) -> None:
        self._check = check
        self._pool = pool if pool is not None else PASSWORD_CHECKS

    @classmethod
    def from_users(
        cls,
        users: Mapping[str, str] | Iterable[tuple[str, str] | AllowedUser],
        *,
        pool: CheckPool | None = None,
    ) -> PasswordAuthenticator:
        """Build one from an allow list: ``AllowedUser`` entries, or user names and plain passwords."""
        items = users.items() if isinstance(users, Mapping) else users
        table = PasswordTable(u if isinstance(u, AllowedUser) else AllowedUser(u[0], password=u[1]) for u in items)
        return cls(table, pool=pool)

    @classmethod
    def from_allow_list(cls, path: Path, *, pool: CheckPool | None = None) -> PasswordAuthenticator:
        """Build one from an allow-list file (see :func:`load_allow_list`).

        Raises:
            ConfigurationError: the file cannot be used (the message says where).
        """
        return cls.from_users(load_allow_list(path), pool=pool)

    async def __call__(self, request: HandshakeRequest) -> str:
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None:  # no name given: nothing to check, nothing to learn from the timing
            raise unauthorized()
        if not await self._pool.run(self._check, *credentials):
            raise unauthorized()
        return credentials[0]

    def __repr__(self) -> str:
        return f"PasswordAuthenticator({self._check!r})"


def load_certificates(source: Path | bytes) -> list[x509.Certificate]:
    """Certificates from a PEM bundle or one DER certificate (a file, or its bytes).

    Raises:
        ConfigurationError: unreadable, or no certificate in it.
    """
    name = str(source) if isinstance(source, Path) else "certificate data"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as exc:
        raise ConfigurationError(f"cannot read {name}: {exc.strerror or exc}") from None
    from cryptography import x509

    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ConfigurationError(f"{name}: no certificate in it") from None


Acceptor = Callable[["x509.Certificate"], str | None]


class ClientCertificateAuthenticator:
    """Accepts handshakes whose TLS client certificate chains to ``roots`` and, if given, ``accept`` accepts.

    ``roots``: CA certificates, or self-signed client certificates trusted one
    by one (each is its own root). The listener's TLS context asks clients
    for certificates and trusts exactly :attr:`client_roots`
    (:func:`engine.replication.tls.server_context`): the TLS layer verifies the
    chain, dates and key usage, before any HTTP byte. ``accept`` receives the
    verified certificate and returns the principal, or None to refuse. The
    default principal is the subject's common name (else the whole subject).
    """

    def __init__(self, roots: Iterable[x509.Certificate], accept: Acceptor | None = None) -> None:
        self._roots = tuple(roots)
        if not self._roots:
            raise ConfigurationError(
                "a client-certificate authenticator needs root certificates: Python's ssl verifies client"
                " certificates only against roots (list a self-signed client certificate to trust it alone)"
            )
        self._accept = accept

    @classmethod
    def from_file(cls, path: Path, accept: Acceptor | None = None) -> ClientCertificateAuthenticator:
        """Trust the certificates of a PEM bundle (or one DER certificate) as roots.

        Raises:
            ConfigurationError: the file cannot be read or holds no certificate.
        """
        return cls(load_certificates(path), accept)

    @property
    def client_roots(self) -> tuple[x509.Certificate, ...]:
        """The certificates the listener's TLS context must trust for client certificates."""
        return self._roots

    def __call__(self, request: HandshakeRequest) -> str:
        if request.peer_certificate is None:
            raise unauthorized("a client certificate is required")
        from cryptography import x509

        certificate = x509.load_der_x509_certificate(request.peer_certificate)
        if self._accept is None:
            return _subject_name(certificate)
        principal = self._accept(certificate)
        if not principal:
            raise unauthorized("client certificate refused")
        return principal

    def __repr__(self) -> str:
        return f"ClientCertificateAuthenticator({len(self._roots)} roots, accept={self._accept!r})"


def _subject_name(certificate: x509.Certificate) -> str:
    from cryptography.x509.oid import NameOID

    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) and value else certificate.subject.rfc4514_string()


class CertificateOrPasswordAuthenticator:
    """A client certificate, if the client presents one, decides; otherwise a password does.

    The listener's TLS context must then ask for client certificates without
    requiring them (``CERT_OPTIONAL``). A client presenting a certificate the
    roots do not cover fails the TLS handshake: it cannot fall back to a password.
    """

    def __init__(self, certificate: ClientCertificateAuthenticator, password: PasswordAuthenticator) -> None:
        self.certificate = certificate
        self.password = password

    @property
    def client_roots(self) -> tuple[x509.Certificate, ...]:
        """The certificate authenticator's roots."""
        return self.certificate.client_roots

    async def __call__(self, request: HandshakeRequest) -> str:
        if request.peer_certificate is not None:
            return self.certificate(request)
        return await self.password(request)


def listener_authenticator(
    authenticator: Authenticator | None, *, throttle: SignInThrottle | None
) -> Authenticator | None:
    """The handshake hook for a listener's choice: throttled, or None for :data:`NO_AUTHENTICATION`.

    Raises:
        ConfigurationError: no choice made (None).
    """
    if authenticator is None:
        raise ConfigurationError(
            "a listener needs an authenticator (users and passwords, client certificates),"
            " or NO_AUTHENTICATION to let anyone in"
        )
    if isinstance(authenticator, OpenAccess):
        return None
    return authenticator if throttle is None else ThrottledAuthenticator(authenticator, throttle)
