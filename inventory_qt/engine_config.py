"""From the app's settings to the engine's configurations: the one place TLS and discovery plug in.

Today the engine's listener serves plain ``ws://`` with a password allow list,
and the replicator connects with Basic credentials. The security issue adds
TLS identities, certificate validation and a new authenticator API, the
discovery issue adds advertising and browsing; when they merge, the values
the Settings dialog already stores and validates are handed to the engine
here, and nowhere else:

* :func:`listener_tls` -- EXTENSION POINT (TLS): build the listener's TLS
  context and certificate fingerprint from ``ListenerSettings.tls_mode``,
  ``identity_file`` and ``identity_password`` (engine/replication/tls.py).
* :func:`replicator_tls` -- EXTENSION POINT (TLS): build the client context
  from ``ReplicatorSettings.validation``, ``pinned_certificate``, ``ca_file``;
  trust-on-first-use asks through the ``trust`` callback (see
  :class:`inventory_qt.bridge.PeerReplication`).
* :func:`listener_authenticator` -- the allow list from Settings, or only the
  signed-in user; the security issue's explicit open-access choice goes here.

Everything here may read small files. The app's sync engine process
(:mod:`inventory_qt.engine_host`) builds the configurations it runs; the
Browser tab builds a replicator configuration once more when a peer is first
connected, only to refuse at once what cannot work. No Qt here: the engine
process imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.database import Database
from engine.inventory_merge import ItemMergeResolver
from engine.replication.auth import BasicAuthenticator, PasswordAuthenticator, load_allow_list
from engine.replication.listener import ListenerConfiguration
from engine.replication.listener_tls import listener_identity
from engine.replication.replicator_types import ReplicatorConfiguration, ReplicatorType
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity
from inventory_qt.settings import ListenerSettings, ReplicatorSettings, Validation

__all__ = [
    "THREADED_DATABASE",
    "ListenerSetup",
    "TrustPrompt",
    "listener_authenticator",
    "listener_setup",
    "listener_tls",
    "replicator_configuration",
    "replicator_tls",
]

#: Asked when a peer shows a certificate not seen before (trust on first use) or a changed
#: one: ``(url, sha256 fingerprint, changed)`` -> whether to trust it. Wired by the TLS merge.
TrustPrompt = Callable[[str, str, bool], bool]

#: Database work of the listener and replicators on a thread of its own (True), or inline on the
#: engine thread (False). Both keep commits off the GUI thread, since the engine has a thread of its
#: own (:mod:`inventory_qt.engine_thread`); inline leaves one thread fewer wanting the GIL, and the
#: GUI stalled less during a 50,000-document pull with it (docs/notes.md).
THREADED_DATABASE = False

_NO_TLS_YET = "the {what} TLS mode is not available in this version yet; choose Disabled in Settings > Listener > TLS"


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

    EXTENSION POINT (discovery): advertising (``settings.advertise``) is started
    beside the listener by :class:`inventory_qt.bridge.ListenerBridge`.
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
    trust_store: Path,
) -> ReplicatorConfiguration:
    """A continuous push-and-pull replication with ``url`` as the signed-in user.

    ``remote_name`` is a discovered peer's stable ID (its checkpoint survives a new address).

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
    )
