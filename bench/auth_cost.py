"""What a sign-in costs: per kind of allow-list entry, a flood of them, and the throttle's books.

1. Password checks (``PasswordTable``) per kind: a plain entry, a hashed entry
   (right and wrong password), an unknown user. The kinds take turns in a
   shuffled order each round; medians and spreads are printed, with each
   kind's median relative to the unknown user's (which is also timed twice
   over, as two kinds: their difference is the noise floor). Run at the real scrypt cost
   (``--rounds``), then at a tiny one (``--cheap-rounds``, n=16) where what is
   not scrypt (lookup, MAC, comparisons) is all there is to see.
2. A flood of ``--flood`` parallel sign-ins (run first) through ``PasswordAuthenticator``:
   how many were checked or refused with 503, the time, the event loop's
   longest stall, and the peak RSS growth (scrypt memory is bounded by the pool).
3. The throttle: memory per tracked address, and the cost of a refusal.

    .venv/bin/python bench/auth_cost.py [--rounds 30] [--cheap-rounds 20000] [--flood 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.datastructures import Headers

from engine.replication import event_loop, tuning
from engine.replication.auth import PasswordAuthenticator
from engine.replication.blip.websocket import HandshakeRequest
from engine.replication.errors import HTTPStatusError
from engine.replication.passwords import AllowedUser, PasswordHash, PasswordTable, hash_password
from engine.replication.throttle import SignInThrottle


def table_kinds(n: int) -> tuple[PasswordTable, dict[str, tuple[str, str]]]:
    users = [
        AllowedUser("plain-user", password="correct horse"),
        AllowedUser("hashed-user", password_hash=PasswordHash.parse(hash_password("battery staple", n=n))),
    ]
    kinds = {
        "plain, right password": ("plain-user", "correct horse"),
        "plain, wrong password": ("plain-user", "correct horsf"),
        "hashed, right password": ("hashed-user", "battery staple"),
        "hashed, wrong password": ("hashed-user", "battery staplf"),
        "unknown user": ("nobody", "correct horse"),
        "unknown user, again": ("nobody", "correct horse"),  # the same kind twice: the noise floor
    }
    return PasswordTable(users), kinds


def time_kinds(table: Callable[[str, str], bool], kinds: dict[str, tuple[str, str]], rounds: int) -> None:
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for kind in order:  # warm up
        table(*kinds[kind])
    for _ in range(rounds):
        random.shuffle(order)
        for kind in order:
            start = time.perf_counter_ns()
            table(*kinds[kind])
            samples[kind].append((time.perf_counter_ns() - start) / 1000)
    base = statistics.median(samples["unknown user"])
    print(f"  {'kind':<25} {'median µs':>11} {'p10':>10} {'p90':>10} {'vs unknown':>11}")
    for kind in kinds:
        values = sorted(samples[kind])
        median = statistics.median(values)
        p10, p90 = values[len(values) // 10], values[len(values) * 9 // 10]
        print(f"  {kind:<25} {median:>11.1f} {p10:>10.1f} {p90:>10.1f} {median / base - 1:>+10.2%}")


async def flood(count: int) -> None:
    table, _ = table_kinds(tuning.SCRYPT_N)
    auth = PasswordAuthenticator(table)
    token = base64.b64encode(b"nobody:guess").decode()
    request = HandshakeRequest("/db/_blipsync", "db", Headers({"Authorization": f"Basic {token}"}), ("192.0.2.7", 1))
    stalls: list[float] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - start - 0.001)

    async def one() -> int:
        try:
            await auth(request)
        except HTTPStatusError as exc:
            return exc.status
        return 200

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    watcher = asyncio.create_task(watch())
    start = time.perf_counter()
    statuses = await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.perf_counter() - start
    done.set()
    await watcher
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"  {count} parallel sign-ins: {statuses.count(401)} checked (401), {statuses.count(503)} refused busy (503)"
        f" in {elapsed:.2f} s; event loop's longest stall {max(stalls) * 1000:.1f} ms;"
        f" peak RSS +{(rss_after - rss_before) / 1024:.1f} MiB"
        f" ({tuning.PASSWORD_CHECK_WORKERS} workers x {128 * tuning.SCRYPT_R * tuning.SCRYPT_N >> 20} MiB of scrypt)"
    )


def throttle_books() -> None:
    throttle = SignInThrottle(clock=lambda: 0.0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(tuning.SIGN_IN_TRACKED):
        keys = throttle.keys((f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1))
        throttle.begin(keys)
        throttle.failed(keys)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"  {throttle.tracked} tracked addresses: {used / 1024:.0f} KiB ({used / throttle.tracked:.0f} bytes each)")
    locked = throttle.keys(("192.0.2.7", 1))
    for _ in range(tuning.SIGN_IN_LOCK_AFTER):
        throttle.begin(locked)
        throttle.failed(locked)
    start = time.perf_counter_ns()
    for _ in range(10_000):
        throttle.refusal(throttle.keys(("192.0.2.7", 1)))
    print(f"  a refusal (keys + lookup): {(time.perf_counter_ns() - start) / 10_000 / 1000:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cheap-rounds", type=int, default=20_000)
    parser.add_argument("--flood", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  logged: %(message)s")
    n, r, p = tuning.SCRYPT_N, tuning.SCRYPT_R, tuning.SCRYPT_P
    print("A flood through PasswordAuthenticator (first, so that RSS starts clean):")
    event_loop.run(flood(args.flood))
    print(f"Password checks at the real cost (scrypt n={n}, r={r}, p={p}), {args.rounds} rounds:")
    time_kinds(*table_kinds(n), args.rounds)
    print(f"Password checks at scrypt n=16 (what is not scrypt), {args.cheap_rounds} rounds:")
    time_kinds(*table_kinds(16), args.cheap_rounds)
    print("The throttle:")
    throttle_books()


if __name__ == "__main__":
    main()
