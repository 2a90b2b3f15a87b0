"""Repeated failed sign-ins: slowed down, then refused for a while (protocol §1 Authentication).

:class:`SignInThrottle` keeps the books and decides; it does no I/O and reads
an injected clock. After ``free_failures`` failures each further attempt waits
before it is checked, longer each time; after ``lock_after`` the address gets
HTTP 429 with ``Retry-After`` for a while, longer at each lockout; a success
forgets the address. Once an address has failed ``free_failures`` times, its
attempts still in progress count towards ``lock_after`` too, so that parallel
guesses get no more tries than a sequence; an address that has not failed may
open as many connections at once as it likes (twenty replicators on one
machine). An attempt that ends without a verdict (the client left, the checks
were busy) counts for nothing.

An IPv4 client of a dual-stack socket counts as its IPv4 address. An IPv6
address counts alone and within its /64, which gets ``network_factor`` times
the allowance: one host cycling through its network's addresses is held back,
while one noisy host does not lock out the neighbours it shares a LAN's /64
with.

:class:`ThrottledAuthenticator` applies it around a listener's authenticator:
refused and delayed attempts never reach the password check, so they cost no
scrypt work.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from engine.replication import tuning
from engine.replication.blip.websocket import Authenticator, HandshakeRequest
from engine.replication.errors import HTTPStatusError

__all__ = ["SignInThrottle", "ThrottledAuthenticator", "address_keys", "too_many_attempts"]

log = logging.getLogger(__name__)

#: A throttle key and the multiple of the allowance it gets.
Key = tuple[str, int]


def address_keys(address: Any, network_factor: int = tuning.SIGN_IN_NETWORK_FACTOR) -> tuple[Key, ...]:
    """The keys a client's address is counted under.

    ``address`` is a socket address (``(host, port, ...)``) or a host. IPv4 and
    IPv4-mapped IPv6 addresses count as the IPv4 address; other IPv6 addresses
    as themselves (scope dropped) and as their /64, with ``network_factor``.
    """
    host = address[0] if isinstance(address, tuple | list) and address else address
    if not isinstance(host, str):
        return (("unknown", 1),)
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return ((host, 1),)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ((str(ip.ipv4_mapped), 1),)
        network = ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))
        return ((str(ip), 1), (str(network), network_factor))
    return ((str(ip), 1),)


class _Record:
    """What is known of one key."""

    __slots__ = ("failures", "in_progress", "last", "locked_until", "lockouts")

    def __init__(self, now: float) -> None:
        self.failures = 0
        self.in_progress = 0  # attempts begun, not yet ended
        self.last = now  # when an attempt last began or failed
        self.locked_until = 0.0
        self.lockouts = 0  # lockouts since the key was last forgotten


class SignInThrottle:
    """Counts failed sign-ins per address and says when to slow down or refuse one.

    Args:
        clock: seconds, monotonic (tests pass a fake one).
        free_failures, slowdown, max_slowdown, lock_after, lockout,
        max_lockout, network_factor, forget_after, max_tracked: see
            ``tuning.SIGN_IN_*``.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        free_failures: int = tuning.SIGN_IN_FREE_FAILURES,
        slowdown: float = tuning.SIGN_IN_SLOWDOWN,
        max_slowdown: float = tuning.SIGN_IN_MAX_SLOWDOWN,
        lock_after: int = tuning.SIGN_IN_LOCK_AFTER,
        lockout: float = tuning.SIGN_IN_LOCKOUT,
        max_lockout: float = tuning.SIGN_IN_MAX_LOCKOUT,
        network_factor: int = tuning.SIGN_IN_NETWORK_FACTOR,
        forget_after: float = tuning.SIGN_IN_FORGET_AFTER,
        max_tracked: int = tuning.SIGN_IN_TRACKED,
    ) -> None:
        if not 0 <= free_failures < lock_after or max_tracked < 1:
            raise ValueError("need 0 <= free_failures < lock_after and max_tracked >= 1")
        self._clock = clock
        self.free_failures, self.lock_after = free_failures, lock_after
        self.slowdown, self.max_slowdown = slowdown, max_slowdown
        self.lockout, self.max_lockout = lockout, max_lockout
        self.network_factor, self.forget_after, self.max_tracked = network_factor, forget_after, max_tracked
        self._records: OrderedDict[str, _Record] = OrderedDict()  # least recently touched first

    @property
    def tracked(self) -> int:
        """Keys currently remembered."""
        return len(self._records)

    def keys(self, address: Any) -> tuple[Key, ...]:
        """The keys ``address`` counts under (see :func:`address_keys`)."""
        return address_keys(address, self.network_factor)

    def refusal(self, keys: tuple[Key, ...]) -> float:
        """Seconds before these keys may try again; 0 when they may try now."""
        now = self._clock()
        wait = 0.0
        for key, factor in keys:
            record = self._records.get(key)
            if record is None:
                continue
            self._settle(record, now, factor)
            if record.locked_until > now:
                wait = max(wait, record.locked_until - now)
            elif self._charged(record, factor) >= self.lock_after * factor:  # attempts in progress may lock it
                wait = max(wait, self._lockout_length(record))
        return wait

    def begin(self, keys: tuple[Key, ...]) -> float:
        """Note an attempt that presents credentials; return the seconds to delay it.

        End it with :meth:`failed`, :meth:`succeeded` or :meth:`cancelled`.
        """
        now = self._clock()
        self._forget_stale(now)
        delay = 0.0
        for key, factor in keys:
            record = self._touch(key, now)
            self._settle(record, now, factor)
            beyond = record.failures - self.free_failures * factor
            if beyond >= 0:
                delay = max(delay, min(self.slowdown * 2 ** min(beyond, 30), self.max_slowdown))
            record.in_progress += 1
            record.last = now
        return delay

    def failed(self, keys: tuple[Key, ...]) -> None:
        """The attempt noted by :meth:`begin` failed; lock the keys that reached their limit."""
        now = self._clock()
        for key, factor in keys:
            record = self._records.get(key)
            if record is None:  # dropped to make room meanwhile
                continue
            self._records.move_to_end(key)
            record.in_progress = max(0, record.in_progress - 1)
            record.failures += 1
            record.last = now
            if record.locked_until <= now and record.failures >= self.lock_after * factor:
                length = self._lockout_length(record)
                record.locked_until, record.lockouts = now + length, record.lockouts + 1
                log.warning("refusing sign-ins from %s for %.0f s after %d failures", key, length, record.failures)

    def succeeded(self, keys: tuple[Key, ...]) -> None:
        """The attempt noted by :meth:`begin` succeeded: forget the address's failures (not its network's)."""
        for key, factor in keys:
            record = self._end(key)
            if record is not None and factor == 1:
                record.failures = record.lockouts = 0
                record.locked_until = 0.0
                self._drop_if_empty(key, record)

    def cancelled(self, keys: tuple[Key, ...]) -> None:
        """The attempt noted by :meth:`begin` ended without a verdict: it counts for nothing."""
        for key, _factor in keys:
            self._end(key)

    # -- internals -----------------------------------------------------------------------

    def _charged(self, record: _Record, factor: int) -> int:
        """Failures, and once there were enough to slow down, the attempts in progress too."""
        if record.failures < self.free_failures * factor:
            return record.failures
        return record.failures + record.in_progress

    def _lockout_length(self, record: _Record) -> float:
        return float(min(self.lockout * 2 ** min(record.lockouts, 30), self.max_lockout))

    def _settle(self, record: _Record, now: float, factor: int) -> None:
        """Lift an expired lockout (one more failure locks again, for longer) and forget old failures."""
        if record.locked_until and now >= record.locked_until:
            record.locked_until = 0.0
            record.failures = min(record.failures, self.lock_after * factor - 1)
        if not record.locked_until and not record.in_progress and now - record.last >= self.forget_after:
            record.failures, record.lockouts = 0, 0

    def _touch(self, key: str, now: float) -> _Record:
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
            return record
        while len(self._records) >= self.max_tracked:
            self._records.popitem(last=False)
        record = self._records[key] = _Record(now)
        return record

    def _forget_stale(self, now: float) -> None:
        """Drop the least recently touched keys that have nothing left to remember."""
        while self._records:
            record = next(iter(self._records.values()))
            if record.locked_until > now or record.in_progress or now - record.last < self.forget_after:
                return
            self._records.popitem(last=False)

    def _end(self, key: str) -> _Record | None:
        """Note the end of an attempt in progress; return the key's record if it is still kept."""
        record = self._records.get(key)
        if record is not None:
            record.in_progress = max(0, record.in_progress - 1)
            self._drop_if_empty(key, record)
        return record

    def _drop_if_empty(self, key: str, record: _Record) -> None:
        if not (record.failures or record.in_progress or record.lockouts or record.locked_until):
            self._records.pop(key, None)


def too_many_attempts(wait: float) -> HTTPStatusError:
    """The 429 an address gets while it is refused."""
    return HTTPStatusError(
        429,
        "too many failed sign-ins from this address; try again later",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


class ThrottledAuthenticator:
    """Runs ``inner`` under a :class:`SignInThrottle`; a 401 from it counts as a failure.

    A locked-out address gets 429 before anything else. A request without
    credentials (no ``Authorization`` header, no client certificate) is passed on
    uncharged: Couchbase Lite clients send their password only after a 401
    challenge (protocol §9), so a challenge is no failure.
    """

    def __init__(
        self,
        inner: Authenticator,
        throttle: SignInThrottle,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.throttle = throttle
        self._sleep = sleep

    @property
    def client_roots(self) -> tuple[Any, ...]:
        """The inner authenticator's client certificate roots, if it has any."""
        return tuple(getattr(self.inner, "client_roots", ()))

    async def __call__(self, request: HandshakeRequest) -> Any:
        keys = self.throttle.keys(request.remote_address)
        wait = self.throttle.refusal(keys)
        if wait > 0:
            raise too_many_attempts(wait)
        if "Authorization" not in request.headers and request.peer_certificate is None:
            return await _call(self.inner, request)
        delay = self.throttle.begin(keys)
        try:
            if delay > 0:
                await self._sleep(delay)
            principal = await _call(self.inner, request)
        except HTTPStatusError as exc:
            if exc.status == 401:
                self.throttle.failed(keys)
            else:
                self.throttle.cancelled(keys)
            raise
        except BaseException:
            self.throttle.cancelled(keys)
            raise
        self.throttle.succeeded(keys)
        return principal


async def _call(authenticator: Authenticator, request: HandshakeRequest) -> Any:
    result = authenticator(request)
    return await result if inspect.isawaitable(result) else result
