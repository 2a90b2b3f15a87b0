"""How the replicator validates the listener's certificate, inside the TLS handshake.

Four modes (issue 12):

- ``self-signed``: Couchbase Lite's "accept only self-signed server certificates". Any
  self-signed certificate passes, without chain or host name checks; a CA-signed one is
  refused. Like LiteCore, dates still count: its verify callback (couchbasedeps/sockpp
  ``src/mbedtls_context.cpp``) clears only mbedTLS's "not trusted" and "CN mismatch" flags, so an
  expired self-signed certificate is refused.
- ``ca``: OpenSSL's usual validation against the system roots or a CA bundle, host name or IP
  address included.
- ``pinned``: the certificate must be a given one (DER/PEM, or its SHA-256 fingerprint), whatever
  its dates. LiteCore would refuse an expired pinned certificate (same callback); a pin already
  names the one certificate trusted, and the sample's pinned certificate expired in 2021.
- ``tofu``: trust on first use, as SSH: the fingerprint seen first for a host and port is
  remembered (:mod:`engine.replication.trust_store`), another one is refused until accepted.

The checks of ``self-signed``, ``pinned`` and ``tofu`` run inside the handshake: the client
context's ``sslobject_class`` checks the peer certificate as soon as OpenSSL's handshake returns,
so a refused server never receives an HTTP byte, let alone a password. A refusal is a
:class:`CertificateRefusedError`, which :func:`connection_error` recovers from the ``ssl`` error
carrying it.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.replication.errors import (
    CertificateChangedError,
    CertificateNotTrustedError,
    CertificateRefusedError,
    ConfigurationError,
    HandshakeError,
    ReplicationError,
    TransportError,
)
from engine.replication.tls import (
    TLSIdentity,
    certificates_pem,
    harden,
    is_self_signed,
    load_certificate,
    load_certificate_file,
    parse_fingerprint,
    sha256_fingerprint,
    use_identity,
)
from engine.replication.trust_store import TrustStore, peer_key, trust_key

if TYPE_CHECKING:  # cryptography loads at first use (see engine/replication/tls.py)
    from cryptography import x509

__all__ = ["ServerValidation", "ValidationMode", "connection_error"]

log = logging.getLogger(__name__)

SYSTEM_ROOTS = "the system's trusted roots"
#: OpenSSL reasons meaning the peer answered something that is not TLS (a ws:// listener).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"})


class ValidationMode(enum.Enum):
    """Which server certificates the replicator accepts."""

    SELF_SIGNED = "self-signed"
    CA = "ca"
    PINNED = "pinned"
    TOFU = "tofu"


@dataclass(frozen=True, slots=True)
class ServerValidation:
    """Server certificate validation for ``wss://`` replication; make one with a class method."""

    mode: ValidationMode
    ca_certificates: str | None = field(default=None, repr=False)
    ca_source: str = SYSTEM_ROOTS
    pinned_fingerprint: str | None = None
    trust_store: TrustStore | None = None
    #: trust on first use asks first: an unknown certificate is refused with
    #: CertificateNotTrustedError until it is accepted into the store (the app asks the user)
    confirm_first_use: bool = False

    @classmethod
    def self_signed(cls) -> ServerValidation:
        """Accept any self-signed certificate valid now; refuse CA-signed ones."""
        return cls(ValidationMode.SELF_SIGNED)

    @classmethod
    def ca(cls, ca_file: Path | None = None) -> ServerValidation:
        """Validate the chain against ``ca_file`` (PEM bundle or one DER certificate), else the system roots.

        Raises:
            ConfigurationError: the file cannot be read or holds no certificate.
        """
        if ca_file is None:
            return cls(ValidationMode.CA)
        from cryptography import x509

        try:
            data = Path(ca_file).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{ca_file}: cannot read the CA file: {exc.strerror or exc}") from None
        try:
            roots = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [load_certificate(data)]
        except (ValueError, ConfigurationError):
            raise ConfigurationError(f"{ca_file}: no certificate in it (PEM or DER)") from None
        pem = certificates_pem(roots)
        return cls(ValidationMode.CA, ca_certificates=pem, ca_source=f"the CA file {ca_file}")

    @classmethod
    def pinned(
        cls, certificate: Path | bytes | x509.Certificate | None = None, *, fingerprint: str | None = None
    ) -> ServerValidation:
        """Accept only one certificate: given itself (file, DER/PEM bytes) or by its SHA-256 fingerprint.

        Raises:
            ConfigurationError: neither or both given, an unreadable certificate, a malformed fingerprint.
        """
        if (certificate is None) == (fingerprint is None):
            raise ConfigurationError("pinning needs a certificate or a SHA-256 fingerprint (one of them)")
        if fingerprint is not None:
            return cls(ValidationMode.PINNED, pinned_fingerprint=parse_fingerprint(fingerprint))
        if isinstance(certificate, Path | str):
            certificate = load_certificate_file(Path(certificate))
        elif isinstance(certificate, bytes):
            certificate = load_certificate(certificate)
        assert certificate is not None
        return cls(ValidationMode.PINNED, pinned_fingerprint=sha256_fingerprint(certificate))

    @classmethod
    def tofu(cls, store: TrustStore | Path, *, confirm_first_use: bool = False) -> ServerValidation:
        """Trust each peer's first certificate, kept in ``store``; refuse another one until accepted.

        With ``confirm_first_use`` a certificate not seen before is refused too
        (:class:`CertificateNotTrustedError`) until someone accepts it into the store.
        """
        store = store if isinstance(store, TrustStore) else TrustStore(store)
        return cls(ValidationMode.TOFU, trust_store=store, confirm_first_use=confirm_first_use)

    @classmethod
    def from_mode(
        cls,
        mode: ValidationMode | str,
        *,
        pinned_certificate: Path | None = None,
        pin: str | None = None,
        ca_file: Path | None = None,
        trust_store: TrustStore | Path | None = None,
    ) -> ServerValidation:
        """One entry point for a command line: the mode by name and the settings it needs.

        Raises:
            ConfigurationError: an unknown mode, a setting missing, or a setting the mode does not use.
        """
        try:
            mode = ValidationMode(mode)
        except ValueError:
            names = ", ".join(m.value for m in ValidationMode)
            raise ConfigurationError(f"unknown verification mode {mode!r}; use one of {names}") from None
        given = {"pinned certificate": pinned_certificate, "pin": pin, "CA file": ca_file}
        used = {ValidationMode.PINNED: {"pinned certificate", "pin"}, ValidationMode.CA: {"CA file"}}.get(mode, set())
        extra = [name for name, value in given.items() if value is not None and name not in used]
        if extra:
            raise ConfigurationError(f"verification mode {mode.value!r} does not use a {' or a '.join(extra)}")
        if mode is ValidationMode.SELF_SIGNED:
            return cls.self_signed()
        if mode is ValidationMode.CA:
            return cls.ca(ca_file)
        if mode is ValidationMode.PINNED:
            return cls.pinned(pinned_certificate, fingerprint=pin)
        if trust_store is None:
            raise ConfigurationError("trust on first use needs a trust store file")
        return cls.tofu(trust_store)

    def client_context(
        self, host: str, port: int, identity: TLSIdentity | None = None, *, peer_id: str | None = None
    ) -> ssl.SSLContext:
        """A client context for one connection to ``host:port``, presenting ``identity`` if given.

        ``peer_id`` (a peer found by discovery) keys trust on first use by the
        peer rather than by its address (:func:`~engine.replication.trust_store.trust_key`).
        """
        context = _CheckingContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.mode is ValidationMode.CA:
            if self.ca_certificates is not None:
                context.load_verify_locations(cadata=self.ca_certificates)
            else:
                context.load_default_certs()
        else:  # checked by _PeerCheck once the handshake is through
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        harden(context)
        context.sslobject_class = _CheckingSSLObject
        context.peer_check = _PeerCheck(self, host.strip("[]"), port, trust_key(host.strip("[]"), port, peer_id))
        if identity is not None:
            use_identity(context, identity)
        return context


# -- inside the handshake ------------------------------------------------------------------------


class _Refused(ssl.SSLCertVerificationError):
    """Carries a :class:`CertificateRefusedError` out of the TLS handshake (asyncio expects an SSLError)."""

    def __init__(self, error: CertificateRefusedError) -> None:
        super().__init__(str(error))
        self.error = error

    def __str__(self) -> str:
        return str(self.error)


class _CheckingContext(ssl.SSLContext):
    """A client context that knows which check its connection's certificate must pass."""

    peer_check: _PeerCheck | None = None


class _CheckingSSLObject(ssl.SSLObject):
    """Checks the server certificate the moment the handshake completes, before any HTTP byte."""

    def do_handshake(self) -> None:
        check = getattr(self.context, "peer_check", None)
        try:
            super().do_handshake()
        except ssl.SSLCertVerificationError as exc:
            if check is None:
                raise
            raise _Refused(check.refused_by_library(exc)) from None
        if check is not None:
            error = check(self.getpeercert(binary_form=True))
            if error is not None:
                raise _Refused(error)


@dataclass(frozen=True, slots=True)
class _PeerCheck:
    """One connection's check of the server certificate."""

    validation: ServerValidation
    host: str
    port: int
    trust_key: str

    @property
    def where(self) -> str:
        address = peer_key(self.host, self.port)
        return address if self.trust_key == address else f"{address} ({self.trust_key})"

    def __call__(self, der: bytes | None) -> CertificateRefusedError | None:
        mode = self.validation.mode
        if mode is ValidationMode.CA:
            return None  # OpenSSL checked it
        if der is None:
            return self._refuse("a certificate", "no certificate")
        fingerprint = sha256_fingerprint(der)
        from cryptography import x509

        try:
            certificate: x509.Certificate | None = x509.load_der_x509_certificate(der)
        except ValueError:
            certificate = None
        if mode is ValidationMode.PINNED:
            return self._check_pin(fingerprint, certificate)
        if mode is ValidationMode.TOFU:
            return self._check_first_use(fingerprint, certificate)
        return self._check_self_signed(fingerprint, certificate)

    def _check_pin(self, fingerprint: str, certificate: x509.Certificate | None) -> CertificateRefusedError | None:
        pinned = self.validation.pinned_fingerprint
        if fingerprint == pinned:
            return None
        expected = f"the pinned certificate SHA-256 {pinned}"
        return self._refuse(expected, f"SHA-256 {fingerprint}", certificate, fingerprint, expected_fingerprint=pinned)

    def _check_first_use(
        self, fingerprint: str, certificate: x509.Certificate | None
    ) -> CertificateRefusedError | None:
        store = self.validation.trust_store
        assert store is not None
        subject = certificate.subject.rfc4514_string() if certificate is not None else None
        try:
            known = store.get(self.trust_key)
            if known is None and self.validation.confirm_first_use:
                return self._not_trusted_yet(fingerprint, certificate)
            if known is None:
                known = store.remember(self.trust_key, fingerprint, subject=subject)
                if known.fingerprint == fingerprint:
                    log.info("trusting %s on first use: SHA-256 %s (%s)", self.where, fingerprint, subject)
        except (OSError, ConfigurationError) as exc:
            return self._refuse("a certificate checked against the trust store", f"a trust store error: {exc}")
        if known.fingerprint == fingerprint:
            return None
        seen_subject, seen_issuer = _names(certificate)
        return CertificateChangedError(
            f"{self.where}: the server's certificate changed: expected SHA-256 {known.fingerprint} "
            f"(trusted on first use on {known.first_seen[:10]}), got SHA-256 {fingerprint} ({seen_subject}). "
            "Someone may stand between you and the peer; if the peer renewed its identity, "
            "accept the new fingerprint",
            host=self.host,
            port=self.port,
            expected=f"the certificate trusted on first use, SHA-256 {known.fingerprint}",
            expected_fingerprint=known.fingerprint,
            seen_fingerprint=fingerprint,
            seen_subject=seen_subject,
            seen_issuer=seen_issuer,
            trust_key=self.trust_key,
        )

    def _not_trusted_yet(self, fingerprint: str, certificate: x509.Certificate | None) -> CertificateRefusedError:
        seen_subject, seen_issuer = _names(certificate)
        return CertificateNotTrustedError(
            f"{self.where}: the server's certificate is not trusted yet: SHA-256 {fingerprint} ({seen_subject}); "
            "compare it with the fingerprint the peer shows, and trust it if they match",
            host=self.host,
            port=self.port,
            expected="a certificate trusted on first use",
            seen_fingerprint=fingerprint,
            seen_subject=seen_subject,
            seen_issuer=seen_issuer,
            trust_key=self.trust_key,
        )

    def _check_self_signed(
        self, fingerprint: str, certificate: x509.Certificate | None
    ) -> CertificateRefusedError | None:
        if certificate is None or not is_self_signed(certificate):
            issuer = certificate.issuer.rfc4514_string() if certificate is not None else "an unreadable certificate"
            return self._refuse("a self-signed certificate", f"one issued by {issuer}", certificate, fingerprint)
        now = dt.datetime.now(dt.UTC)
        if now > certificate.not_valid_after_utc:
            seen = f"one that expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
            return self._refuse("a self-signed certificate valid now", seen, certificate, fingerprint)
        if now < certificate.not_valid_before_utc:
            seen = f"one valid only from {certificate.not_valid_before_utc:%Y-%m-%d}"
            return self._refuse("a self-signed certificate valid now", seen, certificate, fingerprint)
        return None

    def refused_by_library(self, exc: ssl.SSLCertVerificationError) -> CertificateRefusedError:
        """The refusal for OpenSSL's own verification failure (``ca`` mode)."""
        reason = exc.verify_message or exc.reason or str(exc)
        expected = f"a certificate for {self.host} from a CA in {self.validation.ca_source}"
        return CertificateRefusedError(
            f"{self.where}: refused the server's certificate: expected {expected}; {reason}",
            host=self.host,
            port=self.port,
            expected=expected,
        )

    def _refuse(
        self,
        expected: str,
        seen: str,
        certificate: x509.Certificate | None = None,
        fingerprint: str | None = None,
        *,
        expected_fingerprint: str | None = None,
    ) -> CertificateRefusedError:
        subject, issuer = _names(certificate)
        if fingerprint is not None and fingerprint not in seen:
            seen = f"{seen}, SHA-256 {fingerprint}"
        if subject is not None:
            seen = f"{seen} ({subject}, {'self-signed' if subject == issuer else f'issued by {issuer}'})"
        return CertificateRefusedError(
            f"{self.where}: refused the server's certificate: expected {expected}, got {seen}",
            host=self.host,
            port=self.port,
            expected=expected,
            expected_fingerprint=expected_fingerprint,
            seen_fingerprint=fingerprint,
            seen_subject=subject,
            seen_issuer=issuer,
            trust_key=self.trust_key,
        )


def _names(certificate: x509.Certificate | None) -> tuple[str | None, str | None]:
    if certificate is None:
        return None, None
    return certificate.subject.rfc4514_string(), certificate.issuer.rfc4514_string()


def connection_error(exc: ssl.SSLError, host: str, port: int) -> ReplicationError:
    """The replication error for a TLS failure while connecting to ``host:port``.

    A refused certificate is a :class:`CertificateRefusedError` (permanent);
    a connection cut during the handshake a :class:`TransportError` (retried);
    a peer that does not speak TLS, or refuses our handshake, a :class:`HandshakeError`.
    """
    where = peer_key(host, port)
    if isinstance(exc, _Refused):
        return exc.error
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return CertificateRefusedError(
            f"{where}: refused the server's certificate: {reason}", host=host, port=port, expected="a valid certificate"
        )
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TransportError(f"{where}: the connection closed during the TLS handshake")
    reason = exc.reason or ""
    if reason in _NOT_TLS:
        return HandshakeError(f"{where} does not answer in TLS (a ws:// listener?): {reason.lower().replace('_', ' ')}")
    if "ALERT" in reason:
        alert = reason.partition("ALERT_")[2].lower().replace("_", " ") or reason
        return HandshakeError(f"{where} refused the TLS handshake ({alert}); is a client certificate needed?")
    return HandshakeError(f"TLS handshake with {where} failed: {exc}")
