"""TLS as a Couchbase Lite 3.0 peer speaks it: mbedTLS 2.x (couchbasedeps/sockpp ``mbedtls_context.cpp``).

- TLS 1.2 at most (mbedTLS 2.x has no TLS 1.3), and only ECDHE key exchange with AES-GCM among the
  suites both sides take (mbedTLS 2.x offers them by default; our listener's policy is ECDHE + AEAD).
- Pinned-certificate mode (the sample's "TLSEnableValidationWithCertPinning"): the server's
  certificate must be the pinned one, byte for byte.
- Host names, in the CA-checked mode: mbedTLS 2.x ``x509_crt_check_san`` compares the host with the
  certificate's DNS subject-alternative names only, and looks at the subject CN only when the
  certificate has no SAN at all; an IP address written as an IP SAN alone does not match. The
  client double records a certificate that would fail that check as a violation when asked to.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["MBEDTLS2_CIPHERS", "ClientTLS", "limit_like_mbedtls2", "mbedtls2_names_host"]

#: The ECDHE + AES-GCM suites of mbedTLS 2.x's default list (ECDSA and RSA keys).
MBEDTLS2_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ]
)


def limit_like_mbedtls2(context: ssl.SSLContext) -> ssl.SSLContext:
    """Restrict ``context`` to what a LiteCore 3.0 peer negotiates: TLS 1.2 and its suites."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(MBEDTLS2_CIPHERS)
    return context


def mbedtls2_names_host(certificate: x509.Certificate, host: str) -> bool:
    """Whether mbedTLS 2.x's host check passes ``certificate`` for ``host`` (see the module docstring)."""
    wanted = host.strip("[]").lower()
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        return wanted in (name.lower() for name in names)
    return wanted in (name.lower() for name in sans.get_values_for_type(x509.DNSName))


@dataclass
class ClientTLS:
    """How the strict replicator double checks a ``wss://`` listener, as LiteCore 3.0 with mbedTLS 2.x."""

    #: the pinned certificate (DER): anything else is refused
    pinned: bytes
    #: also record a violation when the certificate would fail mbedTLS 2.x's host check
    check_host: bool = True

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the pin is compared after the handshake, as LiteCore's callback
        return limit_like_mbedtls2(context)

    def check(self, der: bytes | None, host: str) -> str | None:
        """What LiteCore would refuse about the server certificate ``der`` for ``host``, or None."""
        if der is None:
            return "the listener sent no certificate"
        if der != self.pinned:
            return "the listener's certificate is not the pinned one"
        if self.check_host and not mbedtls2_names_host(x509.load_der_x509_certificate(der), host):
            return f"mbedTLS 2.x would not match host {host!r}: it compares DNS SANs only (or the CN without SANs)"
        return None
