"""TLS on the command line: the listener's identity, the replicator's server validation, trusted peers.

``serve`` and ``sync`` take their TLS options from here (:func:`add_listener_tls_options`,
:func:`add_validation_options`); the commands of their own are

- ``identity show [--pem]`` and ``identity renew``: the identity generated for
  the user's database (the default of ``serve``), its SHA-256 fingerprint that
  peers pin or trust on first use;
- ``trust list``, ``trust accept HOST:PORT SHA256`` and ``trust forget
  HOST:PORT``: the peers' certificates trusted on first use by ``sync``.

Passwords of identity files come from an option, an environment variable, or
a prompt on a terminal; they are never printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from engine.cli.databases import NoDatabaseError
from engine.cli.output import Output, UsageError
from engine.cli.store_commands import Subparsers
from engine.json_codec import dumps
from engine.replication.auth import (
    NO_AUTHENTICATION,
    CertificateOrPasswordAuthenticator,
    ClientCertificateAuthenticator,
    PasswordAuthenticator,
)
from engine.replication.blip.websocket import Authenticator
from engine.replication.errors import ConfigurationError
from engine.replication.listener_tls import GeneratedIdentity, ListenerTLSMode, listener_identity, serving_addresses
from engine.replication.passwords import allow_list_entry
from engine.replication.server_validation import ServerValidation, ValidationMode
from engine.replication.tls import TLSIdentity, parse_fingerprint
from engine.replication.trust_store import TRUST_STORE_FILE, TrustStore, key_from_text, key_to_text
from engine.userdata import database_exists, user_database_path

__all__ = [
    "IDENTITY_PASSWORD_ENV",
    "add_listener_tls_options",
    "add_validation_options",
    "client_identity_from_args",
    "listener_authenticator_from_args",
    "listener_identity_from_args",
    "register",
    "trust_store_path",
    "validation_from_args",
]

IDENTITY_PASSWORD_ENV = "INVENTORY_SYNC_IDENTITY_PASSWORD"  # noqa: S105  (a variable name, not a password)
CLIENT_IDENTITY_PASSWORD_ENV = "INVENTORY_SYNC_CLIENT_IDENTITY_PASSWORD"  # noqa: S105


# -- options of serve and sync -----------------------------------------------------------------


def add_listener_tls_options(p: argparse.ArgumentParser) -> None:
    """``serve``'s TLS options."""
    modes = [m.value for m in ListenerTLSMode]
    p.add_argument(
        "--tls",
        choices=modes,
        default=ListenerTLSMode.GENERATED.value,
        help="generated (default: a self-signed identity kept with the database), anonymous (a new one at "
        "each start), imported (--identity), or disabled (plain ws://: passwords cross the network in clear)",
    )
    p.add_argument("--identity", type=Path, metavar="FILE.p12", help="the PKCS#12 identity of --tls imported")
    p.add_argument(
        "--identity-password", metavar="PW", help=f"its password (default: ${IDENTITY_PASSWORD_ENV}, or asked for)"
    )
    p.add_argument(
        "--client-ca",
        type=Path,
        metavar="FILE",
        help="let in clients whose certificate chains to these roots (PEM bundle; a self-signed client "
        "certificate listed is trusted alone); with --allow-list, clients without one sign in by password",
    )


def add_validation_options(p: argparse.ArgumentParser) -> None:
    """``sync``'s options for ``wss://`` URLs."""
    p.add_argument(
        "--verify",
        choices=[m.value for m in ValidationMode],
        help="how to check the listener's certificate: tofu (default: trust the first one seen, refuse a "
        "change), pinned (--pinned-cert or --pin), ca (--ca-file or the system's roots), or self-signed "
        "(any self-signed one)",
    )
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--pinned-cert", type=Path, metavar="FILE", help="the listener's certificate (DER or PEM)")
    pin.add_argument("--pin", metavar="SHA256", help="the SHA-256 fingerprint of the listener's certificate")
    p.add_argument("--ca-file", type=Path, metavar="FILE", help="CA certificates (PEM) for --verify ca")
    client = p.add_mutually_exclusive_group()
    client.add_argument("--client-identity", type=Path, metavar="FILE.p12", help="present this client certificate")
    client.add_argument("--client-cert", type=Path, metavar="FILE", help="present this PEM client certificate...")
    p.add_argument("--client-key", type=Path, metavar="FILE", help="...with this PEM private key")
    p.add_argument(
        "--client-identity-password",
        metavar="PW",
        help=f"password of the client identity or key (default: ${CLIENT_IDENTITY_PASSWORD_ENV}, or asked for)",
    )


def _secret(given: str | None, env: str, prompt: str, *, required: bool) -> str | None:
    if given is not None:
        return given
    if env in os.environ:
        return os.environ[env]
    if not required:
        return None
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise UsageError(f"{prompt.rstrip(': ')}: give it with an option or ${env}")


def listener_identity_from_args(args: argparse.Namespace) -> TLSIdentity | None:
    """The identity ``serve`` serves (None: TLS disabled); options a mode does not use are usage errors."""
    mode = ListenerTLSMode(args.tls)
    if mode is not ListenerTLSMode.IMPORTED and (args.identity is not None or args.identity_password is not None):
        raise UsageError("--identity and --identity-password go with --tls imported")
    if mode is ListenerTLSMode.IMPORTED and args.identity is None:
        raise UsageError("--tls imported needs --identity FILE.p12")
    password = None
    if mode is ListenerTLSMode.IMPORTED:
        password = _secret(args.identity_password, IDENTITY_PASSWORD_ENV, "password of the identity: ", required=True)
    return listener_identity(
        mode,
        database_dir=user_database_path(args.user, args.data_dir),
        identity_file=args.identity,
        password=password,
        host=args.host,
    )


def listener_authenticator_from_args(args: argparse.Namespace) -> Authenticator:
    """Who ``serve`` lets in: an allow list, client certificates, either, or (explicitly) anyone."""
    if args.no_auth and (args.allow_list is not None or args.client_ca is not None):
        raise UsageError("--no-auth lets anyone in: it goes without --allow-list and --client-ca")
    if args.allow_list is None and args.client_ca is None and not args.no_auth:
        raise UsageError("serve needs --allow-list FILE or --client-ca FILE (or --no-auth to let anyone in)")
    if args.client_ca is not None and args.tls == ListenerTLSMode.DISABLED.value:
        raise UsageError("--client-ca needs TLS (not --tls disabled)")
    if args.no_auth:
        return NO_AUTHENTICATION
    passwords = PasswordAuthenticator.from_allow_list(args.allow_list) if args.allow_list is not None else None
    certificates = ClientCertificateAuthenticator.from_file(args.client_ca) if args.client_ca is not None else None
    if passwords is not None and certificates is not None:
        return CertificateOrPasswordAuthenticator(certificates, passwords)
    if passwords is not None:
        return passwords
    assert certificates is not None
    return certificates


def trust_store_path(args: argparse.Namespace) -> Path:
    """Where the user's certificates trusted on first use are kept (beside the database)."""
    return user_database_path(args.user, args.data_dir) / TRUST_STORE_FILE


def validation_from_args(args: argparse.Namespace, url: str) -> ServerValidation | None:
    """How ``sync`` checks the listener at ``url`` (None for ``ws://``); TLS options for ``ws://`` are a usage error."""
    tls_options = [
        name
        for name in ("verify", "pinned_cert", "pin", "ca_file", "client_identity", "client_cert", "client_key")
        if getattr(args, name) is not None
    ]
    if urlsplit(url).scheme != "wss":
        if tls_options:
            option = "--" + tls_options[0].replace("_", "-")
            raise UsageError(f"{option} is for wss:// URLs; {url} does not use TLS")
        return None
    mode = args.verify
    if mode is None:
        mode = "pinned" if args.pinned_cert or args.pin else "ca" if args.ca_file else "tofu"
    try:
        return ServerValidation.from_mode(
            mode,
            pinned_certificate=args.pinned_cert,
            pin=args.pin,
            ca_file=args.ca_file,
            trust_store=trust_store_path(args),
        )
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def client_identity_from_args(args: argparse.Namespace) -> TLSIdentity | None:
    """The client certificate ``sync`` presents, if any."""
    if args.client_key is not None and args.client_cert is None:
        raise UsageError("--client-key goes with --client-cert")
    if args.client_cert is not None and args.client_key is None:
        raise UsageError("--client-cert needs --client-key")
    if args.client_identity is not None:
        password = _secret(
            args.client_identity_password,
            CLIENT_IDENTITY_PASSWORD_ENV,
            "password of the client identity: ",
            required=True,
        )
        return TLSIdentity.from_pkcs12(args.client_identity, password)
    if args.client_cert is not None:
        password = _secret(args.client_identity_password, CLIENT_IDENTITY_PASSWORD_ENV, "", required=False)
        return TLSIdentity.from_pem_files(args.client_cert, args.client_key, password)
    if args.client_identity_password is not None:
        raise UsageError("--client-identity-password goes with --client-identity or --client-key")
    return None


# -- identity and trust commands --------------------------------------------------------------


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``hash-password``, ``identity`` and ``trust`` to ``commands``."""
    p = commands.add_parser(
        "hash-password",
        parents=[common],
        help="print an allow-list entry with a hashed password (asked for, or read from stdin)",
    )
    p.add_argument("name", metavar="USER")
    p.set_defaults(handler=cmd_hash_password)

    identity = commands.add_parser("identity", parents=[common], help="the listener's generated TLS identity")
    actions = identity.add_subparsers(dest="identity_command", required=True, metavar="ACTION")
    p = actions.add_parser("show", parents=[common], help="its fingerprint, names and dates")
    p.add_argument("--pem", action="store_true", help="print the certificate (PEM; never the key)")
    p.set_defaults(handler=cmd_identity_show)
    p = actions.add_parser("renew", parents=[common], help="replace it (peers must trust the new fingerprint)")
    p.add_argument("--host", default=None, help="the address serve listens on (default: every interface)")
    p.set_defaults(handler=cmd_identity_renew)

    trust = commands.add_parser("trust", parents=[common], help="listeners' certificates trusted on first use")
    actions = trust.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    p = actions.add_parser("list", parents=[common], help="the trusted peers and their fingerprints")
    p.set_defaults(handler=cmd_trust_list)
    p = actions.add_parser("accept", parents=[common], help="trust a peer's new certificate")
    p.add_argument("peer", metavar="HOST:PORT|PEER_ID")
    p.add_argument("fingerprint", metavar="SHA256")
    p.set_defaults(handler=cmd_trust_accept)
    p = actions.add_parser("forget", parents=[common], help="forget a peer (its next certificate is trusted)")
    p.add_argument("peer", metavar="HOST:PORT|PEER_ID")
    p.set_defaults(handler=cmd_trust_forget)


def cmd_hash_password(args: argparse.Namespace, out: Output) -> int:
    """Print ``{"name": .., "password_hash": "scrypt$..."}`` for an allow list (append it to the file)."""
    if not args.name or ":" in args.name:
        raise UsageError("a user name must not be empty or contain ':'")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("an empty password cannot be used")
    out.raw(dumps(allow_list_entry(args.name, password)) + b"\n")
    return 0


def _identity_record(identity: TLSIdentity, path: Path) -> dict[str, object]:
    return {
        "path": str(path),
        "fingerprint": identity.fingerprint,
        "subject": identity.subject,
        "not_valid_before": identity.not_valid_before.isoformat(),
        "not_valid_after": identity.not_valid_after.isoformat(),
        "dns_names": list(identity.dns_names),
        "ip_addresses": list(identity.ip_addresses),
    }


def _print_identity(out: Output, event: str, identity: TLSIdentity, path: Path) -> None:
    data = _identity_record(identity, path)
    text = "\n".join(
        [
            f"SHA-256 fingerprint: {identity.fingerprint}",
            f"subject: {identity.subject}",
            f"valid: {identity.not_valid_before:%Y-%m-%d} to {identity.not_valid_after:%Y-%m-%d}",
            f"names: {', '.join(identity.dns_names)}",
            f"file: {path}",
        ]
    )
    out.result({"event": event, **data}, text)


def _user_database_dir(args: argparse.Namespace) -> Path:
    if not database_exists(args.user, args.data_dir):
        raise NoDatabaseError(f"no database for user {args.user!r}: serve or seed creates one")
    return user_database_path(args.user, args.data_dir)


def cmd_identity_show(args: argparse.Namespace, out: Output) -> int:
    """Show the generated identity (created by the first ``serve``)."""
    store = GeneratedIdentity(_user_database_dir(args))
    identity = store.load()
    if identity is None:
        raise NoDatabaseError(f"user {args.user!r} has no generated identity yet: serve creates one")
    if args.pem:
        out.raw(identity.certificate_pem.encode())
        return 0
    _print_identity(out, "identity", identity, store.path)
    return 0


def cmd_identity_renew(args: argparse.Namespace, out: Output) -> int:
    """Replace the generated identity with a new one."""
    store = GeneratedIdentity(_user_database_dir(args))
    old = store.load() if store.exists else None
    identity = store.renew(serving_addresses(args.host))
    if old is not None:
        out.warning(
            f"the fingerprint changed from {old.fingerprint}: peers that pinned or trusted the old one will refuse "
            "this listener until they accept the new one"
        )
    _print_identity(out, "identity_renewed", identity, store.path)
    return 0


def _trust_key(text: str) -> str:
    try:
        return key_from_text(text)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def cmd_trust_list(args: argparse.Namespace, out: Output) -> int:
    """List the trusted peers."""
    peers = TrustStore(trust_store_path(args)).peers()
    for peer in peers:
        out.result(
            {"event": "trusted_peer", "peer": key_to_text(peer.key), "fingerprint": peer.fingerprint,
             "first_seen": peer.first_seen, "subject": peer.subject},
            f"{key_to_text(peer.key)}  {peer.fingerprint}  since {peer.first_seen[:10]}  {peer.subject or ''}".rstrip(),
        )  # fmt: skip
    if not peers:
        out.note("no peer trusted yet")
    return 0


def cmd_trust_accept(args: argparse.Namespace, out: Output) -> int:
    """Trust a peer's (new) certificate by its fingerprint."""
    key = _trust_key(args.peer)
    try:
        fingerprint = parse_fingerprint(args.fingerprint)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    peer = TrustStore(_user_database_dir(args) / TRUST_STORE_FILE).accept(key, fingerprint)
    out.record(
        {"event": "trusted", "peer": key_to_text(peer.key), "fingerprint": peer.fingerprint},
        f"trusting {key_to_text(peer.key)}: SHA-256 {peer.fingerprint}",
    )
    return 0


def cmd_trust_forget(args: argparse.Namespace, out: Output) -> int:
    """Forget a peer's certificate."""
    if not TrustStore(trust_store_path(args)).forget(_trust_key(args.peer)):
        out.error(f"{args.peer} is not a trusted peer")
        return 1
    out.record({"event": "forgotten", "peer": args.peer}, f"forgot {args.peer}")
    return 0
