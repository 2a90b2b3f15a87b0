"""Make a small certificate authority and the identities a shop needs to try CA-checked TLS.

    python tools/make_certs.py --name shop-laptop.local --name 192.168.1.20 --client till-1 --client till-2

writes into ``certs/`` (or ``--out DIR``):

- ``ca.pem``: the CA certificate. Replicators trust it (``sync --verify ca
  --ca-file certs/ca.pem``) and listeners check client certificates against
  it (``serve --client-ca certs/ca.pem``).
- ``ca.key``: the CA's private key (0600): keep it offline; with it anyone
  can issue certificates the shop trusts. An existing CA is reused.
- ``listener.p12``: the listener's identity, naming every ``--name`` (as DNS
  names and IP addresses), for ``serve --tls imported --identity certs/listener.p12``.
- ``client-<name>.p12``: one client identity per ``--client``, for
  ``sync --client-identity``.

The PKCS#12 files are encrypted with the password given by ``--password``,
``$INVENTORY_SYNC_IDENTITY_PASSWORD``, or a prompt. Nothing here is shipped:
the folder holds only what this script made on this machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.private_files import write_private_file
from engine.replication.tls import TLSIdentity

__all__ = ["CertificateAuthority", "main"]

_BACKDATE = dt.timedelta(hours=1)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass
class CertificateAuthority:
    """A CA certificate and its key, issuing server and client identities."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str = "Inventory Sync shop CA", *, days: int = 3650) -> CertificateAuthority:
        """A new self-signed CA (EC P-256) that may sign end-entity certificates only."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load(cls, certificate: Path, key: Path) -> CertificateAuthority:
        """Read a CA this script saved."""
        private_key = serialization.load_pem_private_key(key.read_bytes(), None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key}: not an EC private key")
        return cls(private_key, x509.load_pem_x509_certificate(certificate.read_bytes()))

    def save(self, certificate: Path, key: Path) -> None:
        """Write the certificate (PEM) and the key (PEM, created 0600)."""
        certificate.write_bytes(self.pem)
        write_private_file(
            key,
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )

    @property
    def pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: Iterable[str], *, client: bool = False, days: int = 825) -> TLSIdentity:
        """An identity signed by this CA: a server naming ``names`` (CN and SANs of both kinds), or a client."""
        names = list(names) or ["localhost"]
        key = ec.generate_private_key(ec.SECP256R1())
        # every name as a DNS name, addresses also as IP addresses: Couchbase Lite 3.0 (mbedTLS 2.x)
        # matches a host against DNS names only, newer TLS stacks an address against IP addresses only
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                continue
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in names]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return TLSIdentity(key, [certificate])


def pkcs12_bytes(identity: TLSIdentity, name: str, password: str) -> bytes:
    """``identity`` as a PKCS#12 file encrypted with ``password``."""
    key = serialization.load_pem_private_key(identity.export_private_key_pem(), None)
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        key,  # type: ignore[arg-type]  # an EC key, which PKCS#12 takes
        identity.certificate,
        None,
        serialization.BestAvailableEncryption(password.encode()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "certs")
    parser.add_argument("--name", action="append", default=[], help="a name or address of the listener (repeat)")
    parser.add_argument("--client", action="append", default=[], help="make a client identity with this name")
    parser.add_argument("--password", help="password of the .p12 files (default: $INVENTORY_SYNC_IDENTITY_PASSWORD)")
    args = parser.parse_args(argv)
    password = args.password or os.environ.get("INVENTORY_SYNC_IDENTITY_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            parser.error("give the .p12 password with --password or $INVENTORY_SYNC_IDENTITY_PASSWORD")
        password = getpass.getpass("password for the .p12 files: ")
    args.out.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key = args.out / "ca.pem", args.out / "ca.key"
    if ca_pem.exists() and ca_key.exists():
        ca = CertificateAuthority.load(ca_pem, ca_key)
        print(f"using the CA in {ca_pem}")
    else:
        ca = CertificateAuthority.create()
        ca.save(ca_pem, ca_key)
        print(f"made a CA: {ca_pem} (keep {ca_key} private)")
    names = args.name or ["localhost", "127.0.0.1", "::1"]
    listener = ca.issue(names)
    write_private_file(args.out / "listener.p12", pkcs12_bytes(listener, "listener", password))
    print(f"listener.p12 for {', '.join(names)}: SHA-256 {listener.fingerprint}")
    for name in args.client:
        client = ca.issue([name], client=True)
        write_private_file(args.out / f"client-{name}.p12", pkcs12_bytes(client, name, password))
        print(f"client-{name}.p12: SHA-256 {client.fingerprint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
