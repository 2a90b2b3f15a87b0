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

Everything here may read small files: call it on the database thread
(:meth:`Session.run`), never on the GUI thread.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.database import Database
from engine.inventory_merge import ItemMergeResolver
from engine.replication.auth import BasicAuthenticator, PasswordAuthenticator, load_allow_list
from engine.replication.errors import ConfigurationError
from engine.replication.listener import ListenerConfiguration
from engine.replication.replicator_types import ReplicatorConfiguration, ReplicatorType
from inventory_qt.settings import ListenerSettings, ReplicatorSettings, TlsMode

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


def listener_tls(settings: ListenerSettings) -> tuple[ssl.SSLContext | None, str | None]:
    """EXTENSION POINT (TLS): the listener's TLS context and certificate fingerprint for ``settings``.

    Raises:
        ConfigurationError: the mode cannot be served (until TLS merges: any mode but Disabled).
    """
    if settings.tls_mode is TlsMode.DISABLED:
        return None, None
    raise ConfigurationError(_NO_TLS_YET.format(what=settings.tls_mode.value))


def replicator_tls(settings: ReplicatorSettings, url: str, trust: TrustPrompt | None) -> ssl.SSLContext | None:
    """EXTENSION POINT (TLS): the client TLS context for ``url`` (None for ``ws://``).

    Raises:
        ConfigurationError: ``wss://`` before TLS merges.
    """
    del settings, trust  # used once the TLS module merges
    if url.lower().startswith("wss://"):
        raise ConfigurationError("secure (wss://) peers are not supported in this version yet")
    return None


def listener_authenticator(settings: ListenerSettings, user: str, password: str) -> PasswordAuthenticator:
    """Who may connect: the users of the allow list file, or (no file chosen) the signed-in user only.

    Raises:
        ConfigurationError: the allow list cannot be read or is malformed.
    """
    if settings.allow_list:
        users = load_allow_list(Path(settings.allow_list).expanduser())
        return PasswordAuthenticator.from_users((u.name, u.password) for u in users)
    return PasswordAuthenticator.from_users({user: password})


def listener_setup(db: Database, settings: ListenerSettings, user: str, password: str) -> ListenerSetup:
    """The listener configuration for ``settings``. Reads files: call on the database thread.

    EXTENSION POINT (discovery): advertising (``settings.advertise``) is started
    beside the listener by :class:`inventory_qt.bridge.ListenerBridge`.
    """
    tls, fingerprint = listener_tls(settings)
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
    trust: TrustPrompt | None = None,
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
        tls=replicator_tls(settings, url, trust),
        conflict_resolver=ItemMergeResolver(),
        threaded_database=THREADED_DATABASE,
        remote_name=remote_name,
    )
