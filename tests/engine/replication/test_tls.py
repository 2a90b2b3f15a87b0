"""TLS identities: creation, PKCS#12 and PEM loading, fingerprints, and the listener's server context."""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import re
import ssl
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.replication.errors import ConfigurationError
from engine.replication.tls import (
    KeyType,
    TLSIdentity,
    is_self_signed,
    load_certificate,
    load_certificate_file,
    parse_fingerprint,
    server_context,
    sha256_fingerprint,
    use_identity,
)
from tests.conftest import TIME_UNIT, needs_shared
from tests.engine.replication.tls_helpers import (
    EXTRA_P12,
    EXTRA_PINNED_CER,
    SEED_FINGERPRINT,
    SEED_P12,
    SEED_PASSWORD,
    SEED_PINNED_CER,
    make_ca,
)

FINGERPRINT = re.compile(r"([0-9A-F]{2}:){31}[0-9A-F]{2}")


@pytest.fixture(scope="module")
def seed() -> TLSIdentity:
    """The sample's identity (RSA-4096: loading it takes about a second, so once per module)."""
    if not SEED_P12.exists():
        pytest.skip(f"{SEED_P12} not present: ../shared is only on the team's machines")
    return TLSIdentity.from_pkcs12(SEED_P12, SEED_PASSWORD)


@pytest.fixture(scope="module")
def created() -> TLSIdentity:
    return TLSIdentity.create_self_signed(["shop-laptop", "127.0.0.1", "192.168.1.20", "::1", "fe80::1", "localhost"])


# -- created identities ---------------------------------------------------------------------------


def test_a_created_identity_names_every_address_in_cn_and_in_both_kinds_of_san(created: TLSIdentity) -> None:
    names = ["shop-laptop", "localhost", "127.0.0.1", "192.168.1.20", "::1"]
    assert sorted(created.common_names) == sorted(names)  # one CN each (mbedTLS reads CNs without SANs)
    assert sorted(created.dns_names) == sorted(names)  # IPs as DNS names too: mbedTLS 2.x matches hosts only there
    assert sorted(created.ip_addresses) == ["127.0.0.1", "192.168.1.20", "::1"]  # OpenSSL matches IPs only here
    assert "fe80::1" not in created.ip_addresses  # a link-local address needs a zone, which a certificate cannot name
    assert all(created.names_address(a) for a in ["shop-laptop", "127.0.0.1", "[::1]", "SHOP-LAPTOP"])
    assert not created.names_address("10.0.0.1")


def test_a_created_identity_is_a_self_signed_ec_p256_server_and_client_certificate(created: TLSIdentity) -> None:
    certificate = created.certificate
    assert created.is_self_signed and is_self_signed(certificate)
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert certificate.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = dt.datetime.now(dt.UTC)
    assert created.not_valid_before < now < created.not_valid_after
    assert dt.timedelta(days=364) < created.not_valid_after - now < dt.timedelta(days=366)
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Inventory Sync"


def test_rsa_2048_option_and_default_names() -> None:
    identity = TLSIdentity.create_self_signed(key_type=KeyType.RSA_2048)
    key = identity.certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    assert "localhost" in identity.dns_names  # with no address given: the host name and localhost


def test_two_created_identities_differ() -> None:
    first, second = (TLSIdentity.create_self_signed(["127.0.0.1"]) for _ in range(2))
    assert first.fingerprint != second.fingerprint and first != second


# -- fingerprints and exports ------------------------------------------------------------------------


def test_fingerprint_format_and_value(created: TLSIdentity) -> None:
    assert FINGERPRINT.fullmatch(created.fingerprint)
    assert created.fingerprint == sha256_fingerprint(created.certificate_der) == sha256_fingerprint(created.certificate)


@pytest.mark.parametrize(
    "text",
    [
        SEED_FINGERPRINT,
        SEED_FINGERPRINT.lower(),
        SEED_FINGERPRINT.replace(":", ""),
        SEED_FINGERPRINT.replace(":", " "),
        "SHA256:" + SEED_FINGERPRINT,
        f"  sha256 {SEED_FINGERPRINT.lower()}  ",
    ],
)
def test_typed_fingerprints_are_normalised(text: str) -> None:
    assert parse_fingerprint(text) == SEED_FINGERPRINT


@pytest.mark.parametrize("text", ["", "5C:94", SEED_FINGERPRINT + ":00", "zz" * 32, "sha1:" + "00" * 20])
def test_malformed_fingerprints_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="SHA-256 fingerprint"):
        parse_fingerprint(text)


def test_exports_carry_no_key_unless_asked(created: TLSIdentity) -> None:
    assert "PRIVATE KEY" not in created.certificate_pem
    assert load_certificate(created.certificate_pem.encode()) == created.certificate
    assert load_certificate(created.certificate_der) == created.certificate
    key_pem = created.export_private_key_pem()
    assert b"-----BEGIN PRIVATE KEY-----" in key_pem
    body = key_pem.decode().splitlines()[1]
    assert body not in repr(created) and "PRIVATE" not in repr(created)
    assert created.fingerprint in repr(created)
    with pytest.raises(TypeError):
        pickle.dumps(created)


def test_an_encrypted_key_export_needs_its_password(created: TLSIdentity) -> None:
    pem = created.export_private_key_pem("s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, None)
    assert serialization.load_pem_private_key(pem, b"s3cret") is not None


# -- the sample's identity -------------------------------------------------------------------------


def test_the_seed_pkcs12_loads_with_its_legacy_encryption(seed: TLSIdentity) -> None:
    assert seed.fingerprint == SEED_FINGERPRINT  # SOURCE.md
    assert isinstance(seed.certificate.public_key(), rsa.RSAPublicKey)
    assert seed.certificate.public_key().key_size == 4096  # type: ignore[union-attr]
    assert seed.subject == "CN=com.example.list-sync-server,O=couchbase,ST=MI,C=US"
    assert seed.is_self_signed and seed.is_expired()
    assert seed.not_valid_after.date() == dt.date(2021, 6, 17)


@needs_shared(SEED_PINNED_CER)
def test_the_seed_pinned_cer_is_the_seed_identitys_certificate(seed: TLSIdentity) -> None:
    pinned = load_certificate_file(SEED_PINNED_CER)
    assert sha256_fingerprint(pinned) == seed.fingerprint == SEED_FINGERPRINT


@needs_shared(EXTRA_P12)
def test_the_extra_pkcs12_is_another_identity_that_its_cer_does_not_match() -> None:
    extra = TLSIdentity.from_pkcs12(EXTRA_P12.read_bytes(), SEED_PASSWORD, name="extra")
    assert extra.fingerprint.startswith("71:EB:ED:EB")
    assert sha256_fingerprint(load_certificate_file(EXTRA_PINNED_CER)).startswith("02:2B:51:32")


def test_the_seed_identity_serves(seed: TLSIdentity) -> None:
    seen = asyncio.run(_handshake(server_context(seed)))
    assert seen["der"] == seed.certificate_der
    assert seen["version"] in ("TLSv1.2", "TLSv1.3")


# -- PKCS#12 and PEM errors -------------------------------------------------------------------------


def _p12(identity: TLSIdentity, password: bytes | None, *, with_key: bool = True) -> bytes:
    key = serialization.load_pem_private_key(identity.export_private_key_pem(), None)
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    if with_key:
        return pkcs12.serialize_key_and_certificates(b"id", key, identity.certificate, None, encryption)  # type: ignore[arg-type]
    return pkcs12.serialize_key_and_certificates(b"id", None, None, [identity.certificate], encryption)


def test_pkcs12_round_trip(tmp_path: Path, created: TLSIdentity) -> None:
    path = tmp_path / "id.p12"
    path.write_bytes(_p12(created, b"pw"))
    assert TLSIdentity.from_pkcs12(path, "pw") == created
    assert TLSIdentity.from_pkcs12(path, b"pw").fingerprint == created.fingerprint


@pytest.mark.parametrize(
    ("content", "password", "words"),
    [
        ("good", "wrong", "wrong password, or not a PKCS#12"),
        ("garbage", "pw", "wrong password, or not a PKCS#12"),
        ("no-key", "pw", "holds no private key"),
        ("missing", "pw", "cannot read the identity file"),
    ],
)
def test_pkcs12_errors_name_the_file(
    tmp_path: Path, created: TLSIdentity, content: str, password: str, words: str
) -> None:
    path = tmp_path / "listener.p12"
    data = {"good": _p12(created, b"pw"), "garbage": b"\x30\x82garbage", "no-key": _p12(created, b"pw", with_key=False)}
    if content in data:
        path.write_bytes(data[content])
    with pytest.raises(ConfigurationError, match=words) as caught:
        TLSIdentity.from_pkcs12(path, password)
    assert str(path) in str(caught.value)
    assert "pw" not in str(caught.value).replace(str(path), "")


def test_seed_pkcs12_with_a_wrong_password(seed: TLSIdentity) -> None:
    with pytest.raises(ConfigurationError, match=r"listener-cert-pkey\.p12: wrong password"):
        TLSIdentity.from_pkcs12(SEED_P12, "not-couchbase")


def test_pem_files(tmp_path: Path, created: TLSIdentity) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(created.certificate_pem)
    key.write_bytes(created.export_private_key_pem("pw"))
    assert TLSIdentity.from_pem_files(cert, key, "pw") == created
    with pytest.raises(ConfigurationError, match=r"key\.pem: the key is encrypted"):
        TLSIdentity.from_pem_files(cert, key)
    with pytest.raises(ConfigurationError, match=r"key\.pem: wrong password"):
        TLSIdentity.from_pem_files(cert, key, "nope")
    key.write_bytes(TLSIdentity.create_self_signed(["x"]).export_private_key_pem())
    with pytest.raises(ConfigurationError, match="does not belong to the certificate"):
        TLSIdentity.from_pem_files(cert, key)
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        TLSIdentity.from_pem_files(key, key)


# -- the server context ---------------------------------------------------------------------------


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext | None = None) -> dict[str, object]:
    """One TLS connection on 127.0.0.1: what the client saw, and the client certificate the server saw."""
    seen: dict[str, object] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["client_der"] = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = listening.sockets[0].getsockname()[1]
    if client is None:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=client), 10 * TIME_UNIT)
        ssl_object = writer.get_extra_info("ssl_object")
        seen.update(
            der=ssl_object.getpeercert(binary_form=True), version=ssl_object.version(), cipher=ssl_object.cipher()
        )
        await reader.read()
        writer.close()
    finally:
        listening.close()
        await listening.wait_closed()
    return seen


def test_the_server_context_refuses_tls_1_1(created: TLSIdentity) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        asyncio.run(_handshake(server_context(created), client))


@pytest.mark.parametrize(
    ("key_type", "suite"),
    [
        # what Couchbase Lite 3.0's mbedTLS 2.x client offers (TLS 1.2 only), per key kind
        (KeyType.EC_P256, "ECDHE-ECDSA-AES128-GCM-SHA256"),
        (KeyType.EC_P256, "ECDHE-ECDSA-CHACHA20-POLY1305"),
        (KeyType.RSA_2048, "ECDHE-RSA-AES256-GCM-SHA384"),
        (KeyType.RSA_2048, "ECDHE-RSA-CHACHA20-POLY1305"),
    ],
)
def test_tls_1_2_clients_find_an_ecdhe_aead_suite(key_type: KeyType, suite: str) -> None:
    identity = TLSIdentity.create_self_signed(["127.0.0.1"], key_type=key_type)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(suite)
    seen = asyncio.run(_handshake(server_context(identity), client))
    assert seen["version"] == "TLSv1.2" and seen["cipher"][0] == suite  # type: ignore[index]


@pytest.mark.parametrize("suite", ["AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"])
def test_suites_without_forward_secrecy_or_aead_are_refused(suite: str) -> None:
    identity = TLSIdentity.create_self_signed(["127.0.0.1"], key_type=KeyType.RSA_2048)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers(suite)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        asyncio.run(_handshake(server_context(identity), client))


@pytest.fixture
def private_tempdir(tmp_path: Path) -> Iterator[Path]:
    original = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    yield tmp_path
    tempfile.tempdir = original


def test_loading_a_key_leaves_no_file_behind(created: TLSIdentity, private_tempdir: Path) -> None:
    server_context(created)
    assert list(private_tempdir.iterdir()) == []


def test_client_certificates_chaining_to_the_roots_reach_the_server() -> None:
    ca, other = make_ca(), make_ca("Another CA")
    server_identity = TLSIdentity.create_self_signed(["127.0.0.1"])
    context = server_context(server_identity, client_roots=[ca.certificate])
    assert context.verify_mode == ssl.CERT_OPTIONAL

    def client(identity: TLSIdentity | None) -> ssl.SSLContext:
        result = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        result.check_hostname, result.verify_mode = False, ssl.CERT_NONE
        if identity is not None:
            use_identity(result, identity)
        return result

    good = ca.issue(["alice"], client=True)
    assert asyncio.run(_handshake(context, client(good)))["client_der"] == good.certificate_der
    assert asyncio.run(_handshake(context, client(None)))["client_der"] is None  # optional: an authenticator decides
    try:  # TLS 1.3: the server's refusal may come after the client's side of the handshake
        refused = asyncio.run(_handshake(context, client(other.issue(["mallory"], client=True))))
    except (ssl.SSLError, ConnectionError):
        refused = {}
    assert "client_der" not in refused  # the server never accepted the connection
    required = server_context(
        server_identity,
        client_roots=[ca.certificate.public_bytes(serialization.Encoding.DER)],
        require_client_certificate=True,
    )
    assert required.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ConfigurationError, match="needs the roots"):
        server_context(server_identity, require_client_certificate=True)


def test_an_identity_needs_a_matching_key_of_a_usable_kind(created: TLSIdentity) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigurationError, match="does not belong"):
        TLSIdentity(other, [created.certificate])
    with pytest.raises(ConfigurationError, match="needs a certificate"):
        TLSIdentity(other, [])


def test_replication_without_certificates_never_loads_cryptography() -> None:
    # some 8 MiB resident: loaded at first use only (a pin, an identity, a client certificate)
    probe = (
        "import sys\n"
        "import engine.replication.listener, engine.replication.replicator, engine.replication.auth\n"
        "from engine.replication.server_validation import ServerValidation\n"
        "from engine.replication.tls import sha256_fingerprint\n"
        "ServerValidation.pinned(fingerprint=sha256_fingerprint(b'x'))\n"
        "print('cryptography' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    identity = TLSIdentity.create_self_signed(["127.0.0.1"])  # and when it is needed, it is there
    assert identity.names_address("127.0.0.1")
