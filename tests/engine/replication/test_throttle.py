"""The sign-in throttle: slowed down, then refused with 429 for a while, per address, on an injected clock."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from websockets.datastructures import Headers

from engine.replication.auth import unauthorized
from engine.replication.blip.websocket import HandshakeRequest
from engine.replication.errors import HTTPStatusError
from engine.replication.replicator_types import ActivityLevel
from engine.replication.throttle import SignInThrottle, ThrottledAuthenticator, address_keys
from tests.engine.replication.conftest import Peers, basic, raw_upgrade, wait_for_activity


class Clock:
    """A fake monotonic clock; ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def fail(throttle: SignInThrottle, address: Any, times: int = 1) -> list[float]:
    """``times`` failed attempts from ``address``; return the delays they were given."""
    delays = []
    for _ in range(times):
        keys = throttle.keys(address)
        assert throttle.refusal(keys) == 0
        delays.append(throttle.begin(keys))
        throttle.failed(keys)
    return delays


# -- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "keys"),
    [
        (("192.0.2.7", 5000), (("192.0.2.7", 1),)),
        (("::ffff:192.0.2.7", 5000, 0, 0), (("192.0.2.7", 1),)),  # an IPv4 client of a dual-stack socket
        (("2001:db8:1:2:aaaa::1", 5000, 0, 0), (("2001:db8:1:2:aaaa::1", 1), ("2001:db8:1:2::/64", 10))),
        (("fe80::1%eth0", 5000, 0, 2), (("fe80::1", 1), ("fe80::/64", 10))),
        ("192.0.2.7", (("192.0.2.7", 1),)),
        (("a-host-name", 1), (("a-host-name", 1),)),
        (None, (("unknown", 1),)),
    ],
)
def test_address_keys(address: Any, keys: tuple[tuple[str, int], ...]) -> None:
    assert address_keys(address) == keys


# -- the books -----------------------------------------------------------------------------------


def test_failures_are_slowed_down_then_refused_and_the_refusal_lifts(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock)
    address = ("192.0.2.7", 1)
    caplog.set_level(logging.WARNING, "engine.replication.throttle")
    assert fail(throttle, address, 10) == [0, 0, 0, 0.5, 1, 2, 4, 4, 4, 4]
    keys = throttle.keys(address)
    assert throttle.refusal(keys) == 60
    clock.now += 59
    assert throttle.refusal(keys) == 1
    assert [r.getMessage() for r in caplog.records] == ["refusing sign-ins from 192.0.2.7 for 60 s after 10 failures"]
    clock.now += 1
    assert throttle.refusal(keys) == 0  # lifted: one more try
    assert fail(throttle, address) == [4]
    assert throttle.refusal(keys) == 120  # failed again: locked again, for longer
    assert len(caplog.records) == 2
    for _ in range(10):  # doubling up to the longest lockout
        clock.now += throttle.refusal(keys)
        fail(throttle, address)
    assert throttle.refusal(keys) == 900


def test_other_addresses_are_unaffected() -> None:
    throttle = SignInThrottle(clock=Clock())
    fail(throttle, ("192.0.2.7", 1), 10)
    assert throttle.refusal(throttle.keys(("192.0.2.7", 2))) == 60  # another port of the same address
    assert throttle.refusal(throttle.keys(("192.0.2.8", 1))) == 0
    assert throttle.begin(throttle.keys(("192.0.2.8", 1))) == 0


def test_a_success_resets_the_address() -> None:
    throttle = SignInThrottle(clock=Clock())
    address = ("192.0.2.7", 1)
    fail(throttle, address, 9)
    keys = throttle.keys(address)
    assert throttle.begin(keys) == 4
    throttle.succeeded(keys)
    assert throttle.tracked == 0
    assert fail(throttle, address, 4) == [0, 0, 0, 0.5]


def test_once_an_address_failed_its_attempts_in_progress_count_at_once() -> None:
    """A burst of parallel guesses gets no more tries than a sequence."""
    throttle = SignInThrottle(clock=Clock())
    address = ("192.0.2.7", 1)
    fail(throttle, address, 3)
    keys = throttle.keys(address)
    for _ in range(7):
        assert throttle.refusal(keys) == 0
        throttle.begin(keys)
    assert throttle.refusal(keys) == 60  # three failed, seven still in progress: no eleventh
    for _ in range(6):
        throttle.cancelled(keys)  # e.g. the checks were busy: they count for nothing
    assert throttle.refusal(keys) == 0


def test_an_address_that_has_not_failed_may_sign_in_many_times_at_once() -> None:
    """Twenty replicators on one machine, say."""
    throttle = SignInThrottle(clock=Clock())
    keys = throttle.keys(("::1", 1))
    assert [throttle.begin(keys) for _ in range(50)] == [0] * 50
    assert throttle.refusal(keys) == 0
    for _ in range(50):
        throttle.succeeded(keys)
    assert throttle.tracked == 0


def test_one_ipv6_host_is_refused_alone_and_a_network_cycling_addresses_as_a_whole() -> None:
    throttle = SignInThrottle(clock=Clock())
    fail(throttle, ("2001:db8::1", 1), 10)
    assert throttle.refusal(throttle.keys(("2001:db8::1", 1))) == 60
    assert throttle.refusal(throttle.keys(("2001:db8::2", 1))) == 0  # a neighbour on the same LAN
    for host in range(2, 11):  # 90 more failures from 9 more addresses of the /64
        fail(throttle, (f"2001:db8::{host}", 1), 10)
    assert throttle.refusal(throttle.keys(("2001:db8::ffff", 1))) == 60  # its whole /64
    assert throttle.refusal(throttle.keys(("2001:db8:0:1::1", 1))) == 0  # the next /64


def test_memory_is_bounded_and_old_failures_are_forgotten() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock, max_tracked=100)
    for host in range(1000):
        fail(throttle, (f"10.0.{host // 250}.{host % 250}", 1), 2)
    assert throttle.tracked == 100
    clock.now += 3600
    fail(throttle, ("192.0.2.7", 1))
    assert throttle.tracked == 1  # the rest had nothing left to remember
    fail(throttle, ("192.0.2.7", 1), 2)
    clock.now += 3600
    assert fail(throttle, ("192.0.2.7", 1), 4) == [0, 0, 0, 0.5]  # forgotten after an hour


# -- around an authenticator -----------------------------------------------------------------------


class Inner:
    """An authenticator that accepts the password "right" and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: HandshakeRequest) -> str:
        self.calls += 1
        if request.headers.get("Authorization") != basic("bob", "right"):
            raise unauthorized()
        return "bob"


def request(authorization: str | None, host: str = "192.0.2.7") -> HandshakeRequest:
    headers = Headers({"Authorization": authorization} if authorization else {})
    return HandshakeRequest("/db/_blipsync", "db", headers, (host, 40000))


async def attempt(auth: ThrottledAuthenticator, authorization: str | None, host: str = "192.0.2.7") -> int | str:
    try:
        return str(await auth(request(authorization, host)))
    except HTTPStatusError as exc:
        return exc.status


@pytest.mark.asyncio
async def test_refused_attempts_never_reach_the_password_check() -> None:
    clock, inner = Clock(), Inner()
    auth = ThrottledAuthenticator(inner, SignInThrottle(clock=clock), sleep=clock.sleep)
    assert [await attempt(auth, basic("bob", "wrong")) for _ in range(10)] == [401] * 10
    assert clock.slept == [0.5, 1, 2, 4, 4, 4, 4]
    assert inner.calls == 10
    with pytest.raises(HTTPStatusError) as info:
        await auth(request(basic("bob", "right")))
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "60" and info.value.retry_after == 60
    assert await attempt(auth, None) == 429  # a locked-out address gets nothing else either
    assert inner.calls == 10  # no scrypt work for refused attempts
    assert await attempt(auth, basic("bob", "right"), host="192.0.2.8") == "bob"
    clock.now += 60
    assert await attempt(auth, basic("bob", "right")) == "bob"
    slept = len(clock.slept)
    assert await attempt(auth, basic("bob", "wrong")) == 401
    assert len(clock.slept) == slept  # not slowed down: the success forgot the address


@pytest.mark.asyncio
async def test_a_challenge_is_no_failure() -> None:
    """Couchbase Lite clients send their password only after a 401 challenge (protocol §9)."""
    clock, inner = Clock(), Inner()
    throttle = SignInThrottle(clock=clock)
    auth = ThrottledAuthenticator(inner, throttle, sleep=clock.sleep)
    assert [await attempt(auth, None) for _ in range(30)] == [401] * 30
    assert throttle.tracked == 0 and clock.slept == []


@pytest.mark.asyncio
async def test_busy_checks_are_refunded() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock)

    async def busy(_request: HandshakeRequest) -> str:
        raise HTTPStatusError(503, "busy", headers={"Retry-After": "1"})

    auth = ThrottledAuthenticator(busy, throttle, sleep=clock.sleep)
    assert [await attempt(auth, basic("bob", "x")) for _ in range(20)] == [503] * 20
    assert throttle.tracked == 0


# -- on a listener ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_listener_throttles_repeated_failures_with_429_and_lifts_it_later(peers: Peers) -> None:
    clock = Clock()
    db = peers.database("a")
    db.save("doc", {"secret": "xyzzy"})
    listener = await peers.listener(db, throttle=SignInThrottle(clock=clock, slowdown=0))
    url = listener.urls[0]
    for _ in range(10):
        response = await raw_upgrade(url, authorization=basic("bob", "wrong"))
        assert response.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    response = await raw_upgrade(url, authorization=basic("bob", "secret"))
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"\r\nRetry-After: 60\r\n" in head
    assert body == b"too many failed sign-ins from this address; try again later\n"
    assert b"xyzzy" not in response
    other = await raw_upgrade(url, authorization=basic("bob", "secret"), local_host="127.0.0.2")
    assert other.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")  # another address is unaffected
    clock.now += 60
    assert (await raw_upgrade(url, authorization=basic("bob", "secret"))).startswith(b"HTTP/1.1 101 ")


@pytest.mark.asyncio
async def test_the_replicator_reports_the_429_and_when_it_may_retry(peers: Peers) -> None:
    clock = Clock()
    a, b = peers.database("a"), peers.database("b")
    listener = await peers.listener(a, throttle=SignInThrottle(clock=clock, slowdown=0, lock_after=1, free_failures=0))
    assert (await raw_upgrade(listener.urls[0], authorization=basic("bob", "wrong"))).startswith(b"HTTP/1.1 401")
    replicator = peers.replicator(b, listener, continuous=True, max_attempt_wait=0.2)
    replicator.start()
    status = await wait_for_activity(replicator, ActivityLevel.OFFLINE)
    assert isinstance(status.error, HTTPStatusError) and status.error.status == 429
    assert status.retry_in == 60  # the listener's Retry-After, longer than the configured wait
    assert "the peer asks to wait 60 s before trying again" in str(status.error)
    await replicator.stop()
    one_shot = peers.replicator(b, listener, max_attempts=1)
    one_shot.start()
    final = await asyncio.wait_for(one_shot.wait_stopped(), 10)
    assert isinstance(final.error, HTTPStatusError) and final.error.status == 429
    assert (
        str(final.error)
        == "the peer refuses this computer for a while after too many attempts (HTTP 429); the peer asks to wait 60 s before trying again"
    )
