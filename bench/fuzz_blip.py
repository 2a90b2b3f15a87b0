"""Fuzz the sans-I/O BLIP core for longer than the test suite does.

Each case takes a valid frame stream (random messages, frame sizes and
compression), mutates it (bit flips, cuts, insertions, dropped, duplicated
or swapped frames, random garbage frames) and feeds it to a fresh
:class:`BlipConnection`. Every case must end in :class:`ProtocolError` or a
clean result, within a time limit, and the process must stay within a
memory limit; the bytes of unfinished messages must match their buffers,
stay within the connection's and the shared limit, and all come back on
``close()``.

    .venv/bin/python bench/fuzz_blip.py --seconds 600
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.replication.blip.connection import BlipConnection, IncomingBudget
from engine.replication.errors import ProtocolError

MAX_MESSAGE = 200_000
MAX_UNFINISHED = 150_000
CASE_SECONDS = 2


def valid_stream(rnd: random.Random) -> list[bytes]:
    sender = BlipConnection(max_frame_size=rnd.choice([1, 7, 64, 500, 4096, 16384]))
    for _ in range(rnd.randint(1, 6)):
        props = {"Profile": rnd.choice(["rev", "changes", "getAttachment"]), "id": str(rnd.random())}
        body = rnd.randbytes(rnd.randint(0, 20_000)) if rnd.random() < 0.5 else b"a" * rnd.randint(0, 50_000)
        sender.send_request(props, body, compressed=rnd.random() < 0.5, urgent=rnd.random() < 0.2)
    return sender.frames_to_send()


def mutate(rnd: random.Random, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randrange(len(frames))
        frame = bytearray(frames[i])
        how = rnd.randrange(7)
        if how == 0 and frame:
            frame[rnd.randrange(len(frame))] ^= 1 << rnd.randrange(8)
        elif how == 1:
            del frame[rnd.randrange(len(frame) + 1) :]
        elif how == 2:
            frame[rnd.randrange(len(frame) + 1) : 0] = rnd.randbytes(rnd.randint(1, 8))
        elif how == 3:
            del frames[i]
            if not frames:
                return [b""]
            continue
        elif how == 4:
            frames.insert(i, frames[i])
            continue
        elif how == 5 and len(frames) > 1:
            j = rnd.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
            continue
        else:
            frame = bytearray(rnd.randbytes(rnd.randint(0, 64)))
        frames[i] = bytes(frame)
    return frames


def run_case(frames: list[bytes], rnd: random.Random) -> str:
    limit = rnd.choice([20_000, MAX_UNFINISHED])
    budget = IncomingBudget(rnd.choice([limit // 2, limit, 10 * limit]))  # the shared limit or its own first
    conn = BlipConnection(max_message_size=MAX_MESSAGE, max_unfinished_bytes=limit, shared_budget=budget)
    try:
        for frame in frames:
            conn.receive_frame(frame)
            conn.frames_to_send()
            check_unfinished(conn, budget)
        outcome = "clean"
    except ProtocolError as exc:
        outcome = type(exc).__name__ + (" (unfinished)" if "unfinished" in str(exc) else "")
    check_unfinished(conn, budget)
    conn.events_received()
    conn.close()
    if conn.unfinished_bytes or budget.used:
        raise AssertionError(f"close() left {conn.unfinished_bytes} bytes, budget {budget.used}")
    return outcome


def check_unfinished(conn: BlipConnection, budget: IncomingBudget) -> None:
    """The unfinished-bytes accounting matches the buffers and stays within both limits."""
    buffered = sum(len(m.buffer) for m in conn._incoming.values())
    if not conn.unfinished_bytes == budget.used == buffered <= min(conn.max_unfinished_bytes, budget.limit):
        raise AssertionError(f"unfinished {conn.unfinished_bytes}, budget {budget.used}, buffered {buffered}")


def timeout(_signum: int, _frame: FrameType | None) -> None:
    raise TimeoutError("a fuzz case hung")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--max-rss-mib", type=int, default=512)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    signal.signal(signal.SIGALRM, timeout)
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + args.seconds
    cases = 0
    while time.monotonic() < deadline:
        frames = valid_stream(rnd)
        if rnd.random() < 0.9:
            frames = mutate(rnd, frames)
        signal.alarm(CASE_SECONDS)
        try:
            outcomes[run_case(frames, rnd)] += 1
        except Exception:
            print(f"FAILED: case {cases} with seed {args.seed} raised", file=sys.stderr)
            raise
        finally:
            signal.alarm(0)
        cases += 1
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if rss_mib > args.max_rss_mib:
            sys.exit(f"FAILED: peak RSS {rss_mib:.0f} MiB exceeds {args.max_rss_mib} MiB")
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{cases} cases in {args.seconds:.0f} s (seed {args.seed}), peak RSS {rss_mib:.0f} MiB")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:24s} {count}")


if __name__ == "__main__":
    main()
