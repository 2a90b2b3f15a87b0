"""Crash trials: kill a writing process with SIGKILL and check what survives.

A child process saves documents (single saves, batches, updates of one
counter document, and documents with fresh blobs) and prints one ``ack`` line
after each commit returns. The parent kills it at a random moment, reopens
the database and checks that it opens, that every acknowledged save is
present and intact, and that nothing half-written is visible.

Run many trials by hand::

    .venv/bin/python -m tests.engine.crash_store --trials 200
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.blobs import iter_blob_refs
from engine.database import Database
from engine.revid import generation

ROOT = Path(__file__).resolve().parents[2]


def body_hash(body: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def writer(path: Path, seed: int) -> None:
    """The child: write forever, acknowledging each commit on stdout."""
    rnd = random.Random(seed)
    db = Database(path)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        kind = rnd.random()
        if kind < 0.3:
            docs = {
                f"batch-{i}-{k}": {"i": i, "k": k, "pad": "x" * rnd.randint(0, 3000)} for k in range(rnd.randint(2, 40))
            }
            with db.batch() as batch:
                for doc_id, body in docs.items():
                    batch.save(doc_id, body)
            for doc in batch.results:
                print(f"ack {doc.id} {doc.rev_id} {body_hash(docs[doc.id])}", flush=True)
        elif kind < 0.5:
            data = rnd.randbytes(rnd.randint(1, 300_000))
            blob = db.save_blob(data, "application/octet-stream")
            body = {"i": i, "file": blob.to_dict()}
            doc = db.save(f"blob-{i}", body)
            print(f"ack {doc.id} {doc.rev_id} {body_hash(body)}", flush=True)
        elif kind < 0.7:
            body = {"count": i}
            doc = db.save("counter", body)
            print(f"ack {doc.id} {doc.rev_id} {body_hash(body)}", flush=True)
        else:
            body = {"i": i, "text": "y" * rnd.randint(0, 20_000)}
            doc = db.save(f"single-{i}", body)
            print(f"ack {doc.id} {doc.rev_id} {body_hash(body)}", flush=True)


def check(path: Path, acks: list[tuple[str, str, str]]) -> None:
    """Reopen the database and verify every acknowledged save; raise AssertionError otherwise."""
    with Database(path) as db:
        latest: dict[str, tuple[str, str]] = {}
        for doc_id, rev_id, digest in acks:
            latest[doc_id] = (rev_id, digest)
        for doc_id, (rev_id, digest) in latest.items():
            doc = db.get(doc_id)
            assert doc is not None, f"acknowledged {doc_id} is missing"
            if doc_id == "counter":
                assert generation(doc.rev_id) >= generation(rev_id), "acknowledged counter update lost"
                continue
            assert doc.rev_id == rev_id, f"{doc_id} has {doc.rev_id}, acknowledged {rev_id}"
            assert body_hash(doc.body) == digest, f"{doc_id} body differs from what was acknowledged"
        # nothing half-written: every visible document is whole, with its blobs and feed row
        feed = {row.doc_id: row for row in db.changes_since(0)}
        for doc_id in db.doc_ids(include_deleted=True):
            doc = db.get(doc_id)
            assert doc is not None and doc_id in feed and feed[doc_id].rev_id == doc.rev_id
            for ref in iter_blob_refs(doc.body):
                assert len(db.read_blob(ref["digest"])) == ref["length"]
        assert set(feed) == set(db.doc_ids(include_deleted=True))


def trial(seed: int, workdir: Path) -> int:
    """Run one kill-and-check trial; return the number of acknowledged saves."""
    rnd = random.Random(seed)
    path = workdir / f"db-{seed}"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_store", "--child", str(path), "--seed", str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.0, 0.25))  # the kill moment is the randomised input, not synchronisation
        os.kill(child.pid, signal.SIGKILL)
        output = child.stdout.read()
    finally:
        child.kill()
        child.wait()
    acks = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ack":
            acks.append((parts[1], parts[2], parts[3]))
    check(path, acks)
    return len(acks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        writer(args.child, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        total = 0
        for n in range(args.trials):
            total += trial(args.seed + n, Path(tmp))
        print(f"{args.trials} trials passed; {total} acknowledged saves checked")


if __name__ == "__main__":
    main()
