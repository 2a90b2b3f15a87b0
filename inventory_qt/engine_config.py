"""From the app's settings to the engine's configurations: the one place TLS and discovery plug in.

The values the Settings dialog stores and validates reach the engine here, and
nowhere else:

* :func:`listener_tls` -- the listener's TLS identity and certificate
  fingerprint from ``ListenerSettings.tls_mode``, ``identity_file`` and
  ``identity_password`` (:mod:`engine.replication.listener_tls`).
* :func:`replicator_tls` -- how a peer's certificate is checked, from
  ``ReplicatorSettings.validation``, ``pinned_certificate``, ``ca_file``;
  trust on first use asks first (``confirm_first_use``): the Browser tab asks
  the user and :func:`record_trust` writes the answer to the trust store.
* :func:`listener_authenticator` -- the allow list from Settings, or only the
  signed-in user.
* :func:`replicator_configuration` -- a peer typed in by URL, or a discovered
  peer followed by its peer ID (``endpoint``; :mod:`inventory_qt.discovery_bridge`).

Everything here may read small files. The app's sync engine process
(:mod:`inventory_qt.engine_host`) builds the configurations it runs; the
Browser tab builds a replicator configuration once more when a peer is first
connected, only to refuse at once what cannot work. No Qt here: the engine
process imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.database import Database
from engine.inventory_merge import ItemMergeResolver
from engine.replication.auth import BasicAuthenticator, PasswordAuthenticator, load_allow_list
from engine.replication.errors import ConfigurationError
from engine.replication.listener import ListenerConfiguration
from engine.replication.listener_tls import listener_identity
from engine.replication.replicator_types import EndpointResolver, ReplicatorConfiguration, ReplicatorType
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity
from engine.replication.trust_store import TrustStore
from inventory_qt.settings import ListenerSettings, ReplicatorSettings, Validation

__all__ = [
    "THREADED_DATABASE",
    "ListenerSetup",
    "listener_authenticator",
    "listener_setup",
    "listener_tls",
    "record_trust",
    "replicator_configuration",
    "replicator_tls",
]

#: Database work of the listener and replicators on a thread of its own (True), or inline on the
#: engine thread (False). Both keep commits off the GUI thread, since the engine has a thread of its
#: own (:mod:`inventory_qt.engine_thread`); inline leaves one thread fewer wanting the GIL, and the
#: GUI stalled less during a 50,000-document pull with it (docs/notes.md).
THREADED_DATABASE = False


@dataclass(frozen=True, slots=True)
class ListenerSetup:
    """A listener configuration and what the Listener tab shows about it."""

    configuration: ListenerConfiguration
    #: the SHA-256 fingerprint of the certificate served (None without TLS)
    fingerprint: str | None = None


def listener_tls(settings: ListenerSettings, database_dir: Path) -> tuple[TLSIdentity | None, str | None]:
    """The listener's TLS identity and its certificate fingerprint for ``settings`` (None, None: disabled).

    ``generated`` keeps its identity in the user's database directory.

    Raises:
        ConfigurationError: the identity file cannot be read, or its password is wrong.
    """
    identity = listener_identity(
        settings.tls_mode.value,
        database_dir=database_dir,
        identity_file=Path(settings.identity_file).expanduser() if settings.identity_file else None,
        password=settings.identity_password or None,
    )
    return identity, identity.fingerprint if identity is not None else None


def replicator_tls(settings: ReplicatorSettings, url: str, trust_store: Path) -> ServerValidation | None:
    """How the replicator checks the certificate of the listener at ``url`` (None for ``ws://``).

    Trust on first use asks first: a certificate not seen before stops the
    replication with :class:`~engine.replication.errors.CertificateNotTrustedError`,
    and the Browser tab asks the user (``trust_store`` keeps the answer).

    Raises:
        ConfigurationError: a pinned certificate or CA file that cannot be read.
    """
    if not url.lower().startswith("wss://"):
        return None
    if settings.validation is Validation.TOFU:
        return ServerValidation.tofu(trust_store, confirm_first_use=True)
    return ServerValidation.from_mode(
        settings.validation.value,
        pinned_certificate=Path(settings.pinned_certificate).expanduser()
        if settings.validation is Validation.PINNED
        else None,
        ca_file=Path(settings.ca_file).expanduser()
        if settings.validation is Validation.CA and settings.ca_file
        else None,
    )


def record_trust(path: Path, key: str, fingerprint: str, *, subject: str | None, replace: bool) -> str:
    """Trust ``fingerprint`` for the peer under ``key`` (the user said so); return what is trusted now.

    First use (``replace`` False) keeps a fingerprint another connection stored
    meanwhile (the next attempt then reports it as changed); a changed
    certificate the user accepted (``replace`` True) replaces the old one.
    Writes a file: call on the database thread.

    Raises:
        ConfigurationError: the trust store cannot be read or written.
    """
    store = TrustStore(path)
    try:
        trusted = (store.accept if replace else store.remember)(key, fingerprint, subject=subject)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot write the trusted peers: {exc.strerror or exc}") from None
    return trusted.fingerprint


def listener_authenticator(settings: ListenerSettings, user: str, password: str) -> PasswordAuthenticator:
    """Who may connect: the users of the allow list file, or (no file chosen) the signed-in user only.

    Raises:
        ConfigurationError: the allow list cannot be read or is malformed.
    """
    if settings.allow_list:
        return PasswordAuthenticator.from_users(load_allow_list(Path(settings.allow_list).expanduser()))
    return PasswordAuthenticator.from_users({user: password})


def listener_setup(db: Database, settings: ListenerSettings, user: str, password: str) -> ListenerSetup:
    """The listener configuration for ``settings``. Reads files: call on the database thread.

    Advertising (``settings.advertise``) is started beside the listener by
    :class:`inventory_qt.bridge.ListenerBridge` (:mod:`inventory_qt.discovery_bridge`).
    """
    tls, fingerprint = listener_tls(settings, db.path)
    config = ListenerConfiguration(
        db,
        port=settings.port,
        authenticator=listener_authenticator(settings, user, password),
        read_only=settings.read_only,
        enable_delta_sync=settings.delta_sync,
        tls=tls,
        threaded_database=THREADED_DATABASE,
    )
    return ListenerSetup(config, fingerprint)


def replicator_configuration(
    db: Database,
    url: str,
    settings: ReplicatorSettings,
    user: str,
    password: str,
    *,
    remote_name: str | None = None,
    endpoint: EndpointResolver | None = None,
    trust_store: Path,
) -> ReplicatorConfiguration:
    """A continuous push-and-pull replication with ``url`` as the signed-in user.

    ``remote_name`` is a discovered peer's stable ID (its checkpoint survives a new address);
    with ``endpoint`` (the discovery browser's ``PeerEndpoint``) each attempt asks where the
    peer listens now, so a peer restarted on another port is followed, and trust on first
    use keys its certificate by the peer ID.

    Raises:
        ConfigurationError: a URL the replicator cannot use.
    """
    return ReplicatorConfiguration(
        db,
        url,
        type=ReplicatorType.PUSH_AND_PULL,
        continuous=True,
        authenticator=BasicAuthenticator(user, password),
        tls=replicator_tls(settings, url, trust_store),
        conflict_resolver=ItemMergeResolver(),
        threaded_database=THREADED_DATABASE,
        remote_name=remote_name,
        endpoint=endpoint,
    )
