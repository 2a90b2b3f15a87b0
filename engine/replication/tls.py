"""TLS identities: a private key and its certificate chain, and the listener's server context.

An identity comes from a PKCS#12 file (the sample's
``listener-cert-pkey.p12``, legacy RC2 encryption, loads as it is), from PEM
certificate and key files, or is created self-signed. Identities we create
name every address given, in the subject CN and as subject-alternative names
of both kinds: Couchbase Lite 3.0's TLS stack (mbedTLS 2.x) compares a host,
IP addresses included, only with DNS names (or the CN when a certificate has
no SAN at all), while OpenSSL and newer mbedTLS compare an IP address only
with IP SANs.

Key material never appears in logs or ``repr``; the only way out is
:meth:`TLSIdentity.export_private_key_pem`. Python's ``ssl`` loads keys from
files only, so :func:`use_identity` writes the key to a private temporary
file, encrypted with a random one-time password, and removes it at once.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import ipaddress
import secrets
import socket
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.private_files import write_private_file
from engine.replication.errors import ConfigurationError

if TYPE_CHECKING:
    # ``cryptography`` (some 8 MiB resident) is imported by the functions that need it, at first
    # use: a replicator or listener without TLS, or one that only compares fingerprints, never loads it.
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey

__all__ = [
    "ANONYMOUS_VALIDITY",
    "TLS_CIPHERS",
    "KeyType",
    "TLSIdentity",
    "certificate_der",
    "certificates_pem",
    "default_names",
    "format_fingerprint",
    "harden",
    "is_self_signed",
    "load_certificate",
    "load_certificate_file",
    "parse_fingerprint",
    "server_context",
    "sha256_fingerprint",
    "use_identity",
]

#: TLS 1.2 suites: forward secrecy (ECDHE) and authenticated encryption only. Couchbase Lite's
#: mbedTLS 2.x client (TLS 1.2 only) offers ECDHE-RSA/ECDSA with AES-GCM and ChaCha20-Poly1305
#: under its default preset, so it still finds a common suite. TLS 1.3 suites are all AEAD.
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
#: How long a created identity is valid (Couchbase Lite's anonymous identity: one year).
ANONYMOUS_VALIDITY = dt.timedelta(days=365)
#: Created certificates start a day early, so that a peer whose clock is behind accepts them.
_BACKDATE = dt.timedelta(days=1)
_ORGANIZATION = "Inventory Sync"


class KeyType(enum.Enum):
    """The key of a created identity."""

    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"

    def generate(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        """A new private key of this type."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if self is KeyType.RSA_2048:
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())


# -- fingerprints and certificates ---------------------------------------------------------------------


def format_fingerprint(digest: bytes) -> str:
    """Colon-separated upper-case hex (``5C:94:37:...``), as Couchbase Lite's sample shows it."""
    return digest.hex(":").upper()


def sha256_fingerprint(certificate: x509.Certificate | bytes) -> str:
    """The SHA-256 fingerprint of a certificate (or of its DER bytes)."""
    der = certificate if isinstance(certificate, bytes) else certificate_der(certificate)
    return format_fingerprint(hashlib.sha256(der).digest())


def certificate_der(certificate: x509.Certificate) -> bytes:
    """A certificate's DER bytes (a ``.cer`` file)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.DER)


def certificates_pem(certificates: Iterable[x509.Certificate]) -> str:
    """Certificates as concatenated PEM text."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def parse_fingerprint(text: str) -> str:
    """Normalise a SHA-256 fingerprint typed by a person: colons, spaces or none, any case.

    An optional ``sha256:`` / ``SHA256`` prefix is allowed.

    Raises:
        ConfigurationError: not 32 bytes of hex.
    """
    value = text.strip()
    if value.lower().startswith("sha256"):
        value = value[6:].lstrip(":= ")
    digits = "".join(ch for ch in value if ch not in ": -")
    try:
        digest = bytes.fromhex(digits)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigurationError(f"not a SHA-256 fingerprint (64 hex digits, colons allowed): {text!r}")
    return format_fingerprint(digest)


def load_certificate(data: bytes, *, source: str = "certificate") -> x509.Certificate:
    """Read one certificate, DER (``.cer``) or PEM.

    Raises:
        ConfigurationError: neither.
    """
    from cryptography import x509

    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigurationError(f"{source}: not a certificate (DER or PEM)") from None


def load_certificate_file(path: Path) -> x509.Certificate:
    """Read one certificate file, DER (``.cer``) or PEM.

    Raises:
        ConfigurationError: unreadable, or not a certificate.
    """
    return load_certificate(_read(path, "certificate"), source=str(path))


def _load_pem_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigurationError(f"{source}: no PEM certificate in it") from None
    return certificates


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Whether the certificate names itself as issuer and its own key verifies its signature.

    The same test as LiteCore's ``Cert::isSelfSigned`` (Crypto/Certificate.cc).
    """
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None


def _password_bytes(password: str | bytes | None) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    return password.encode()


def _public_der(key: PrivateKey | x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# -- identities -------------------------------------------------------------------------------------


class TLSIdentity:
    """A private key and its certificate chain (leaf first).

    The key is reachable only through :meth:`export_private_key_pem` and
    :func:`use_identity`; ``repr`` shows the subject and the fingerprint.
    """

    __slots__ = ("_chain", "_key")

    def __init__(self, private_key: PrivateKey, chain: Sequence[x509.Certificate]) -> None:
        """Pair a key with its certificate chain.

        Raises:
            ConfigurationError: no certificate, a key of a kind TLS cannot use, or a key that is not the
                certificate's.
        """
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

        if not chain:
            raise ConfigurationError("a TLS identity needs a certificate")
        if not isinstance(
            private_key,
            rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
        ):
            raise ConfigurationError(f"a {type(private_key).__name__} cannot serve TLS; use an RSA or EC key")
        if _public_der(private_key) != _public_der(chain[0]):
            raise ConfigurationError("the private key does not belong to the certificate")
        self._key = private_key
        self._chain = tuple(chain)

    # constructors ----------------------------------------------------------------------------------

    @classmethod
    def from_pkcs12(cls, source: Path | bytes, password: str | bytes | None, *, name: str | None = None) -> TLSIdentity:
        """Load a PKCS#12 (``.p12``/``.pfx``) file or its bytes, legacy encryptions included.

        Raises:
            ConfigurationError: unreadable, wrong password, not PKCS#12, or no key or certificate in it;
                the message names the file (or ``name``).
        """
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import pkcs12

        label = name or (str(source) if not isinstance(source, bytes) else "PKCS#12 data")
        data = source if isinstance(source, bytes) else _read(source, "identity")
        try:
            key, certificate, extra = pkcs12.load_key_and_certificates(data, _password_bytes(password))
        except ValueError:
            raise ConfigurationError(f"{label}: wrong password, or not a PKCS#12 identity file") from None
        except UnsupportedAlgorithm as exc:
            raise ConfigurationError(f"{label}: encrypted with an algorithm this system cannot read: {exc}") from None
        if key is None:
            raise ConfigurationError(f"{label}: the PKCS#12 file holds no private key")
        if certificate is None:
            raise ConfigurationError(f"{label}: the PKCS#12 file holds no certificate for its key")
        try:
            return cls(key, [certificate, *extra])  # type: ignore[arg-type]  # checked in __init__
        except ConfigurationError as exc:
            raise ConfigurationError(f"{label}: {exc}") from None

    @classmethod
    def from_pem_files(cls, certificate: Path, private_key: Path, password: str | bytes | None = None) -> TLSIdentity:
        """Load a PEM certificate chain file (leaf first) and a PEM private key file.

        Raises:
            ConfigurationError: unreadable files, no certificate, a wrong password or a key that does not
                match; the message names the file.
        """
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        chain = _load_pem_certificates(_read(certificate, "certificate"), str(certificate))
        key_data = _read(private_key, "private key")
        try:
            key = load_pem_private_key(key_data, _password_bytes(password))
        except TypeError:
            raise ConfigurationError(f"{private_key}: the key is encrypted; give its password") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigurationError(f"{private_key}: wrong password, or not a PEM private key") from None
        try:
            return cls(key, chain)  # type: ignore[arg-type]  # checked in __init__
        except ConfigurationError as exc:
            raise ConfigurationError(f"{private_key}: {exc}") from None

    @classmethod
    def create_self_signed(
        cls,
        addresses: Iterable[str] = (),
        *,
        key_type: KeyType = KeyType.EC_P256,
        validity: dt.timedelta = ANONYMOUS_VALIDITY,
        now: dt.datetime | None = None,
    ) -> TLSIdentity:
        """Create a self-signed server identity naming ``addresses`` (host names and IP addresses).

        Each address goes into the subject (one CN each) and into the SANs,
        IP addresses both as IP SANs and as DNS SANs (see the module docstring);
        with no address, the host name and ``localhost`` are named.
        The certificate serves as a client identity too (extended key usages).
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        dns_names, ips = _split_addresses(addresses or default_names())
        names = [*dns_names, *(str(ip) for ip in ips)]
        key = key_type.generate()
        start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION)]
            + [x509.NameAttribute(NameOID.COMMON_NAME, name) for name in names]
        )
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        sans += [x509.IPAddress(ip) for ip in ips]
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=isinstance(key, rsa.RSAPrivateKey),
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _BACKDATE + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, [certificate])

    # the certificate -----------------------------------------------------------------------------------

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate."""
        return self._chain[0]

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The leaf certificate, then any intermediates given with it."""
        return self._chain

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf certificate, ``5C:94:37:...``: what peers pin."""
        return sha256_fingerprint(self.certificate)

    @property
    def certificate_der(self) -> bytes:
        """The leaf certificate, DER (a ``.cer`` file)."""
        return certificate_der(self.certificate)

    @property
    def certificate_pem(self) -> str:
        """The certificate chain, PEM (no key)."""
        return certificates_pem(self._chain)

    @property
    def subject(self) -> str:
        """The leaf certificate's subject (RFC 4514)."""
        return self.certificate.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        """The leaf certificate's issuer (RFC 4514)."""
        return self.certificate.issuer.rfc4514_string()

    @property
    def not_valid_before(self) -> dt.datetime:
        """Start of validity (UTC)."""
        return self.certificate.not_valid_before_utc

    @property
    def not_valid_after(self) -> dt.datetime:
        """End of validity (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def is_self_signed(self) -> bool:
        """Whether the leaf certificate signs itself."""
        return is_self_signed(self.certificate)

    @property
    def dns_names(self) -> tuple[str, ...]:
        """DNS names among the subject-alternative names."""
        from cryptography import x509

        sans = self._sans()
        return tuple(sans.get_values_for_type(x509.DNSName)) if sans else ()

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        """IP addresses among the subject-alternative names."""
        from cryptography import x509

        sans = self._sans()
        return tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)) if sans else ()

    @property
    def common_names(self) -> tuple[str, ...]:
        """Every CN of the subject."""
        from cryptography.x509.oid import NameOID

        return tuple(str(a.value) for a in self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME))

    def _sans(self) -> x509.SubjectAlternativeName | None:
        from cryptography import x509

        try:
            return self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None

    def names_address(self, address: str) -> bool:
        """Whether the certificate names ``address`` in a way every TLS stack accepts."""
        host = address.strip("[]").lower()
        try:
            ip = str(ipaddress.ip_address(host))
        except ValueError:
            return host in {n.lower() for n in self.dns_names}
        return ip in self.ip_addresses and ip in self.dns_names

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        """Whether the validity period has ended."""
        return (now or dt.datetime.now(dt.UTC)) > self.not_valid_after

    # the key (explicit only) -----------------------------------------------------------------------------

    def export_private_key_pem(self, password: str | bytes | None = None) -> bytes:
        """The PRIVATE KEY, PKCS#8 PEM, encrypted when ``password`` is given. Handle with care."""
        from cryptography.hazmat.primitives import serialization

        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(_password_bytes(password) or b"")
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def __repr__(self) -> str:
        until = f"{self.not_valid_after:%Y-%m-%d}"
        return f"TLSIdentity(subject={self.subject!r}, sha256={self.fingerprint}, not_after={until})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a TLSIdentity holds a private key and is not pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLSIdentity) and other.certificate_der == self.certificate_der

    def __hash__(self) -> int:
        return hash(self.certificate_der)


# -- addresses ----------------------------------------------------------------------------------------


def default_names() -> list[str]:
    """This machine's host name (and ``<name>.local``, how mDNS peers reach it) and ``localhost``."""
    host = socket.gethostname().lower()
    names = [host] if host else []
    if host and "." not in host:
        names.append(f"{host}.local")
    return [*names, "localhost"]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))


def _split_addresses(addresses: Iterable[str]) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    names: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for address in _unique(a.strip().strip("[]") for a in addresses):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            names.append(address.lower())
            continue
        if ip.is_link_local and ip.version == 6:
            continue
        ips.append(ip)
    return _unique(names), list(dict.fromkeys(ips))


# -- SSL contexts ---------------------------------------------------------------------------------------


def use_identity(context: ssl.SSLContext, identity: TLSIdentity) -> None:
    """Load ``identity`` into ``context`` without leaving its key readable on disk.

    ``ssl`` reads keys from files only: the chain and the key, encrypted with a
    random password that lives only in memory, go to a file of a private
    temporary directory (0700, the file 0600), which is removed once loaded.
    """
    password = secrets.token_hex(32).encode()
    pem = identity.certificate_pem.encode() + identity.export_private_key_pem(password)
    with tempfile.TemporaryDirectory(prefix="inventory-sync-tls-") as directory:
        path = Path(directory) / "identity.pem"
        write_private_file(path, pem, durable=False)
        context.load_cert_chain(path, password=password)


def harden(context: ssl.SSLContext) -> None:
    """TLS 1.2 or newer, ECDHE and AEAD suites only, no compression or renegotiation."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def server_context(
    identity: TLSIdentity,
    *,
    client_roots: Iterable[x509.Certificate | bytes] | None = None,
    require_client_certificate: bool = False,
) -> ssl.SSLContext:
    """The listener's TLS context for ``identity``.

    With ``client_roots``, clients are asked for a certificate, and one that
    does not chain to those roots fails the handshake; clients without one
    still connect (an authenticator decides) unless ``require_client_certificate``.

    Raises:
        ConfigurationError: a client root that is not a certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    harden(context)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    use_identity(context, identity)
    roots = [load_certificate(r) if isinstance(r, bytes) else r for r in client_roots or ()]
    if roots:
        context.load_verify_locations(cadata=certificates_pem(roots))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    elif require_client_certificate:
        raise ConfigurationError("requiring client certificates needs the roots they must chain to")
    return context
