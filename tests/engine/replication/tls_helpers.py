"""Certificates for TLS tests: the sample's seed identities, and a test CA that issues identities."""

from __future__ import annotations

from tests.conftest import SEED_DATA
from tools.make_certs import CertificateAuthority

SEED_P12 = SEED_DATA / "listener-cert-pkey.p12"
SEED_PINNED_CER = SEED_DATA / "listener-pinned-cert.cer"
EXTRA_P12 = SEED_DATA / "certs-extra" / "listener-self-signed-cert.p12"
EXTRA_PINNED_CER = SEED_DATA / "certs-extra" / "pinned-listener-self-signed-cert.cer"
INVALID_PINNED_CER = SEED_DATA / "certs-extra" / "pinned-invalid-listener-cert.cer"
SEED_PASSWORD = "couchbase"
#: SEED_DATA/SOURCE.md: the fingerprint of the certificate in listener-cert-pkey.p12.
SEED_FINGERPRINT = "5C:94:37:6E:BC:E6:EF:6B:27:10:A8:D5:83:EC:9F:78:1B:73:80:CF:76:FC:B7:72:4F:4C:15:E3:11:69:43:EA"


class TestCA(CertificateAuthority):
    """A certificate authority made for one test run (as ``tools/make_certs.py`` makes one for a shop)."""

    __test__ = False  # not a test class for pytest


def make_ca(name: str = "Inventory Sync Test CA") -> TestCA:
    """A new self-signed CA certificate and key."""
    ca = CertificateAuthority.create(name, days=365)
    return TestCA(ca.key, ca.certificate)
