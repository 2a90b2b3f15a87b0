"""Store benchmark: S1 documents into a Database, next to raw LMDB on the same data.

Writes the 10,000 S1 inventory documents (``bench.scenario_docs.py``) into a fresh
:class:`~engine.database.Database` in one batch, then 1,000 of them one save
(one durable commit) at a time, and does the same with raw py-lmdb in the
same run: ``key = _id, value = JSON bytes`` (the shared anchor's method), once
with the JSON encoded before the timer (the anchor's own figure) and once
encoding inside the timer. Every mode runs ``--runs`` times in a fresh
directory, the modes taking turns; medians are printed.

    .venv/bin/python bench/store.py [--runs 5] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scenario_docs import item_doc, item_json, split
from engine.database import Database


def timed(fn: Callable[[Path], None]) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        start = time.perf_counter()
        fn(tmp / "db")
        return time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def raw_lmdb(
    pairs: list[tuple[bytes, bytes]] | None, docs: list[dict[str, object]], per_txn: int
) -> Callable[[Path], None]:
    def run(path: Path) -> None:
        env = lmdb.open(str(path), map_size=1 << 30)
        items = pairs if pairs is not None else None
        for start in range(0, len(docs), per_txn):
            with env.begin(write=True) as txn:
                if items is not None:
                    for key, value in items[start : start + per_txn]:
                        txn.put(key, value)
                else:
                    for doc in docs[start : start + per_txn]:
                        txn.put(str(doc["_id"]).encode(), json.dumps(doc, separators=(",", ":")).encode())
        env.close()

    return run


def ours(docs: list[dict[str, object]], per_txn: int) -> Callable[[Path], None]:
    split_docs = [split(d) for d in docs]

    def run(path: Path) -> None:
        with Database(path) as db:
            if per_txn == 1:
                for doc_id, body in split_docs:
                    db.save(doc_id, body)
            else:
                for start in range(0, len(split_docs), per_txn):
                    with db.batch() as batch:
                        for doc_id, body in split_docs[start : start + per_txn]:
                            batch.save(doc_id, body)
            assert db.last_sequence == len(split_docs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--singles", type=int, default=1_000)
    args = parser.parse_args()
    docs = [item_doc(i) for i in range(1, args.n + 1)]
    pairs = [(f"item-{i:06d}".encode(), item_json(i)) for i in range(1, args.n + 1)]
    modes = [
        (f"raw LMDB, {args.n} pre-encoded, 1 txn", raw_lmdb(pairs, docs, args.n), args.n),
        (f"raw LMDB, {args.n} encoded in timer, 1 txn", raw_lmdb(None, docs, args.n), args.n),
        (f"Database, {args.n} in one batch", ours(docs, args.n), args.n),
        (
            f"raw LMDB, {args.singles} pre-encoded, 1/txn",
            raw_lmdb(pairs[: args.singles], docs[: args.singles], 1),
            args.singles,
        ),
        (f"Database, {args.singles} single saves", ours(docs[: args.singles], 1), args.singles),
    ]
    rates: dict[str, float] = {}
    print(f"{'mode':48s} {'median ms':>10s} {'docs/s':>12s}")
    times: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    for _ in range(args.runs):  # rounds of every mode, so that machine noise hits all of them alike
        for name, fn, _ in modes:
            times[name].append(timed(fn))
    for name, _, count in modes:
        seconds = statistics.median(times[name])
        rates[name] = count / seconds
        print(f"{name:48s} {seconds * 1e3:10.1f} {count / seconds:12,.0f}")
    batch = rates[f"Database, {args.n} in one batch"]
    print()
    print(f"batched: raw pre-encoded / Database = {rates[modes[0][0]] / batch:.2f}x")
    print(f"batched: raw encoded-in-timer / Database = {rates[modes[1][0]] / batch:.2f}x (target: within 3x)")
    print(f"single saves: raw / Database = {rates[modes[3][0]] / rates[modes[4][0]]:.2f}x")


if __name__ == "__main__":
    main()
