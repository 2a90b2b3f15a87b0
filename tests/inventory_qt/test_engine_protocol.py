"""The messages between the app and its sync engine: they pickle, and errors come back with their meaning."""

from __future__ import annotations

import errno
import pickle
import ssl

import pytest

from engine.changes import Changes, ChangeSource
from engine.replication.errors import (
    BlipError,
    CertificateChangedError,
    CertificateNotTrustedError,
    HTTPStatusError,
    ReplicationError,
    TransportError,
)
from engine.replication.listener import ConnectionEvent, ListenerStatus
from engine.replication.replicator_types import ActivityLevel, Progress, ReplicatorStatus
from inventory_qt.engine_protocol import (
    Committed,
    ConnectPeer,
    Hello,
    ListenerClient,
    ListenerStatusEvent,
    RemoteError,
    ReplicatorStatusEvent,
    StartListener,
    decode_error,
    encode_error,
)
from inventory_qt.errors import describe_error
from inventory_qt.settings import Settings


def across(value: object) -> object:
    """What the other end of the pipe receives."""
    return pickle.loads(pickle.dumps(value))


def round_trip(exc: BaseException) -> BaseException:
    info = across(encode_error(exc))
    return decode_error(info)  # type: ignore[arg-type]


def test_a_refused_certificate_keeps_its_type_and_what_the_trust_question_needs() -> None:
    exc = CertificateNotTrustedError(
        "not trusted yet",
        host="shop.local",
        port=4984,
        expected="a certificate trusted before",
        seen_fingerprint="AB:CD",
        seen_subject="CN=shop",
        trust_key="peer:1234",
    )
    back = round_trip(exc)
    assert type(back) is CertificateNotTrustedError and str(back) == "not trusted yet"
    assert (back.trust_key, back.seen_fingerprint, back.host, back.port) == ("peer:1234", "AB:CD", "shop.local", 4984)  # type: ignore[attr-defined]
    changed = round_trip(
        CertificateChangedError(
            "changed", host="h", port=1, expected="x", expected_fingerprint="OLD", seen_fingerprint="NEW"
        )
    )
    assert isinstance(changed, CertificateChangedError) and changed.old_fingerprint == "OLD"


def test_authentication_and_network_failures_keep_their_words() -> None:
    refused = round_trip(HTTPStatusError(401, "unauthorized", headers={"WWW-Authenticate": "Basic"}))
    assert isinstance(refused, HTTPStatusError) and refused.status == 401
    assert describe_error(refused) == "Wrong user name or password."
    busy = round_trip(HTTPStatusError(429, "busy", headers={"Retry-After": "7"}))
    assert busy.retry_after == 7.0 and "wait 7 s" in str(busy)  # type: ignore[attr-defined]
    blip = round_trip(BlipError("HTTP", 404, "no such db"))
    assert isinstance(blip, BlipError) and (blip.domain, blip.code, blip.message) == ("HTTP", 404, "no such db")
    # the cause decides the words of a transport error
    try:
        raise TransportError("connect failed") from ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    except TransportError as exc:
        transport = round_trip(exc)
    assert isinstance(transport.__cause__, ConnectionRefusedError) and transport.__cause__.errno == errno.ECONNREFUSED
    assert describe_error(transport) == "Nobody is listening at that address (connection refused)."
    port = round_trip(OSError(errno.EADDRINUSE, "Address already in use"))
    assert "already in use" in (describe_error(port) or "")
    missing = round_trip(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/identity.p12"))
    assert isinstance(missing, FileNotFoundError) and missing.filename == "/x/identity.p12"
    bad_cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    bad_cert.verify_message = "self-signed certificate"
    try:
        raise TransportError("tls") from bad_cert
    except TransportError as exc:
        tls = round_trip(exc)
    assert describe_error(tls) == "The peer's certificate cannot be trusted (self-signed certificate)."


class _NotOursError(Exception):
    def __init__(self, a: int, *, b: int) -> None:
        super().__init__(f"{a} and {b}")


def test_an_error_of_an_unknown_kind_comes_back_in_words() -> None:
    back = round_trip(_NotOursError(1, b=2))  # defined in the tests: not rebuilt
    assert type(back) is RemoteError and str(back) == "1 and 2"
    assert describe_error(back) == "1 and 2."
    # a class outside the engine, the app and the standard library is never imported by name
    info = encode_error(ReplicationError("x"))
    forged = type(info)("os:system", ("true",), "x")
    assert type(decode_error(forged)) is RemoteError


def test_statuses_events_and_commands_cross_the_pipe() -> None:
    error = HTTPStatusError(401, "unauthorized")
    status = ReplicatorStatus(ActivityLevel.OFFLINE, Progress(3, 10), error, 2.5)
    event = across(ReplicatorStatusEvent.of(7, status, pulled=3))
    assert isinstance(event, ReplicatorStatusEvent) and event.key == 7 and event.pulled == 3
    back = event.status()
    assert (back.activity, back.progress, back.retry_in) == (ActivityLevel.OFFLINE, Progress(3, 10), 2.5)
    assert isinstance(back.error, HTTPStatusError) and back.error.status == 401
    changes = Changes(("doc::list", "a"), ChangeSource.REMOTE, 42)
    assert across(Committed.of(changes)).changes() == changes  # type: ignore[attr-defined]
    assert across(ListenerStatusEvent.of(ListenerStatus(2, 1))).status() == ListenerStatus(2, 1)  # type: ignore[attr-defined]
    connected = ConnectionEvent(True, "127.0.0.1:5", "bob")
    assert across(ListenerClient.of(connected)).event() == connected  # type: ignore[attr-defined]
    settings = Settings()
    assert across(StartListener(1, settings.listener, "127.0.0.1")) == StartListener(1, settings.listener, "127.0.0.1")
    assert across(ConnectPeer(2, "ws://h:1/db", settings.replicator)) == ConnectPeer(
        2, "ws://h:1/db", settings.replicator
    )


def test_the_password_crosses_the_pipe_but_never_shows_in_repr() -> None:
    hello = Hello("/data/users/alice", "alice", "s3cret")
    assert across(hello) == hello
    assert "s3cret" not in repr(hello)


@pytest.mark.parametrize("value", [object(), {1: object()}])
def test_attributes_that_do_not_pickle_are_left_out(value: object) -> None:
    exc = ReplicationError("x")
    exc.thing = value  # type: ignore[attr-defined]
    exc.code = 5  # type: ignore[attr-defined]
    back = round_trip(exc)
    assert not hasattr(back, "thing") and back.code == 5  # type: ignore[attr-defined]
