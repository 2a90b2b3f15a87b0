"""Certificates for TLS tests: the sample's seed identities, and a test CA that issues identities."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.replication.tls import TLSIdentity
from tests.conftest import SEED_DATA

SEED_P12 = SEED_DATA / "listener-cert-pkey.p12"
SEED_PINNED_CER = SEED_DATA / "listener-pinned-cert.cer"
EXTRA_P12 = SEED_DATA / "certs-extra" / "listener-self-signed-cert.p12"
EXTRA_PINNED_CER = SEED_DATA / "certs-extra" / "pinned-listener-self-signed-cert.cer"
INVALID_PINNED_CER = SEED_DATA / "certs-extra" / "pinned-invalid-listener-cert.cer"
SEED_PASSWORD = "couchbase"
#: SEED_DATA/SOURCE.md: the fingerprint of the certificate in listener-cert-pkey.p12.
SEED_FINGERPRINT = "5C:94:37:6E:BC:E6:EF:6B:27:10:A8:D5:83:EC:9F:78:1B:73:80:CF:76:FC:B7:72:4F:4C:15:E3:11:69:43:EA"


@dataclass
class TestCA:
    """A certificate authority made for one test run."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    __test__ = False  # not a test class for pytest

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, addresses: Iterable[str], *, days: int = 30, client: bool = False) -> TLSIdentity:
        """An identity signed by this CA, naming ``addresses`` (DNS names and IP addresses as SANs)."""
        names = list(addresses)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "client")]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return TLSIdentity(key, [certificate])


def make_ca(name: str = "Inventory Sync Test CA") -> TestCA:
    """A new self-signed CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TestCA(key, certificate)
