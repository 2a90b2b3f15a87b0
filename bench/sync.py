"""Replication benchmark: scenarios S1-S4 of the shared PouchDB anchor, listener and replicator in two processes.

Same documents and timing boundaries as ``../shared/bench/pouchdb/README.md``:

* **S1** one-shot pull of N inventory documents into an empty database
  (timed from ``start()`` to completion; N = 10,000 and 50,000).
* **S2** one-shot pull of 500 photo documents with a 16 KiB picture each.
* **S3** continuous push-and-pull with 1,000 documents caught up, then 200
  sequential edits of ``item-000001`` on the listener's database; per edit,
  the time from asking for the edit to seeing its revision in the client's
  database (e2e), and from the listener's commit to that (propagation).
* **S4** continuous push-and-pull; 10 rounds of: create a document on the
  listener side, wait for it, stop replicating, edit it on both sides,
  restart, and time until both sides hold the same winning revision.

Each run uses a fresh copy of the seeded listener database and a fresh
client database; both databases are durable (fsync per commit), and the
page cache is written back (``os.sync``) before each run starts. The
listener runs in its own process, started by the client process, which
sends it edits over a pipe. Peak RSS of both processes is reported.

    .venv/bin/python bench/sync.py [--runs 3] [--scenarios s1,s2,s3,s4] [--pouchdb RESULTS.json ...]

Ratios are against PouchDB's figures recorded in the anchor's RESULTS.md,
or, with ``--pouchdb``, against runs of the PouchDB harness on this machine
(the JSON files its ``bench.js`` writes under ``results/``; several are
pooled). The machine kind varies between sessions, so a side-by-side ratio
needs the harness run on the same machine, ideally between runs of ours::

    cp -r ../shared/bench/pouchdb /tmp/pouchdb-bench && (cd /tmp/pouchdb-bench && npm ci)
    (cd /tmp/pouchdb-bench && node bench.js --label here-1)
    .venv/bin/python bench/sync.py --pouchdb /tmp/pouchdb-bench/results/here-1.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scenario_docs import attachment_bytes, item_doc, item_json, photo_doc, split
from engine.changes import Changes
from engine.database import Database
from engine.replication import event_loop
from engine.replication.auth import NO_AUTHENTICATION
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import (
    ActivityLevel,
    ReplicatorConfiguration,
    ReplicatorStatus,
    ReplicatorType,
)

#: PouchDB's pooled medians recorded in ../shared/bench/pouchdb/RESULTS.md (headline table).
POUCHDB_RECORDED = {
    "s1-10000 docs/s": 2945,
    "s1-50000 docs/s": 3547,
    "s2 MB/s": 7.51,
    "s3 e2e median ms": 19.19,
    "s3 e2e p95 ms": 30.10,
    "s4 median ms": 25.49,
}


#: fsync on every commit (the default); ``--no-fsync`` shows what the disk costs
DURABLE = os.environ.get("SYNC_BENCH_NO_FSYNC") != "1"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the listener process --------------------------------------------------------------------------


async def serve(path: Path) -> None:
    """Serve ``path``; obey ``edit``/``create``/``watch``/``quit`` lines on stdin."""
    db = Database(path, durable=DURABLE)
    listener = URLEndpointListener(ListenerConfiguration(db, host="127.0.0.1", authenticator=NO_AUTHENTICATION))
    await listener.start()
    loop = asyncio.get_running_loop()
    watched: set[str] = set()

    def changed(changes: Changes) -> None:
        for doc_id in changes.doc_ids:
            if doc_id in watched:
                doc = db.get(doc_id)
                assert doc is not None
                print(f"change {doc_id} {doc.rev_id} {int(doc.conflicted)} {time.monotonic_ns()}", flush=True)

    db.add_change_listener(changed)
    print(f"READY {listener.port}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        command, args = line[0], line[1:]
        if command == "quit":
            break
        if command == "watch":
            watched.add(args[0])
        elif command == "edit":  # edit DOC_ID VALUE [BASE_REV]
            current = db.get(args[0])
            body = dict(current.body) if current else {}
            body.update(value=int(args[1]), updated=time.time(), side="A")
            doc = db.save(args[0], body)
            print(f"ok {doc.rev_id} {time.monotonic_ns()}", flush=True)
    await listener.stop()
    db.close()
    print(f"RSS {peak_rss_mib():.1f}", flush=True)


# -- the client process ----------------------------------------------------------------------------


class Server:
    """The listener process, from the client's side."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"ws://127.0.0.1:{port}/userdb"
        self.acks: asyncio.Queue[list[str]] = asyncio.Queue()
        self.changes: asyncio.Queue[list[str]] = asyncio.Queue()
        self.rss = 0.0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, path: Path) -> Server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", str(path), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode().split()
        return cls(proc, int(line[1]))

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode().split():
            if line[0] == "ok":
                self.acks.put_nowait(line)
            elif line[0] == "change":
                self.changes.put_nowait(line)
            elif line[0] == "RSS":
                self.rss = float(line[1])

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())

    async def edit(self, doc_id: str, value: int) -> tuple[str, int]:
        self.send(f"edit {doc_id} {value}")
        _, rev, stamp = await self.acks.get()
        return rev, int(stamp)

    async def stop(self) -> None:
        self.send("quit")
        await self.proc.wait()
        await self._reader


class RevisionWatch:
    """When each (doc, rev) became current in a database, as its change feed told it.

    The time is taken in the change observer itself, the moment the feed
    emits the change, as the PouchDB harness does in its ``change`` handler;
    whatever else the event loop runs before a waiting coroutine resumes is
    not counted.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: dict[tuple[str, str], tuple[int, bool]] = {}  # -> (monotonic ns, conflicted)
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self.changed = asyncio.Event()  # set at every change; cleared by whoever waits on it
        db.add_change_listener(self._changed)

    def _changed(self, changes: Changes) -> None:  # commits run on the event loop's thread (inline calls)
        stamp = time.monotonic_ns()
        for doc_id in changes.doc_ids:
            doc = self.db.get(doc_id)
            if doc is not None:
                key = (doc_id, doc.rev_id)
                first = self.seen.get(key)
                if first is None or (first[1] and not doc.conflicted):  # when it came, or its conflict went
                    self.seen[key] = (stamp, doc.conflicted)
                self._events.setdefault(key, asyncio.Event()).set()
        self.changed.set()

    async def wait(self, doc_id: str, rev: str) -> int:
        """The time ``rev`` became current (waiting for it, at most 30 s)."""
        key = (doc_id, rev)
        if key not in self.seen:
            async with asyncio.timeout(30):
                await self._events.setdefault(key, asyncio.Event()).wait()
        return self.seen[key][0]


async def one_shot_pull(db: Database, url: str) -> float:
    replicator = Replicator(ReplicatorConfiguration(db, url, type=ReplicatorType.PULL))
    start = time.perf_counter()
    replicator.start()
    status = await replicator.wait_stopped()
    elapsed = time.perf_counter() - start
    if status.error is not None:
        raise RuntimeError(f"replication failed: {status.error}")
    return elapsed


async def idle(replicator: Replicator) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check(status: ReplicatorStatus) -> None:
        if status.activity is ActivityLevel.IDLE and not done.done():
            done.set_result(None)

    remove = replicator.add_change_listener(check)
    if replicator.status.activity is ActivityLevel.IDLE:
        remove()
        return
    await asyncio.wait_for(done, 60)
    remove()


async def client(scenario: str, a_path: Path, b_path: Path, n: int) -> dict[str, Any]:
    server = await Server.start(a_path)
    db = Database(b_path, durable=DURABLE)
    result: dict[str, Any] = {}
    try:
        if scenario == "s1":
            seconds = await one_shot_pull(db, server.url)
            payload = 0
            for i in range(1, n + 1):  # verified after the timer: every field of every document
                doc_id, body = split(item_doc(i))
                got = db.get(doc_id)
                assert got is not None and got.body == body, doc_id
                payload += len(item_json(i))
            assert db.document_count() == n
            result = {"seconds": seconds, "docs_per_s": n / seconds, "mb_per_s": payload / seconds / 1e6}
        elif scenario == "s2":
            seconds = await one_shot_pull(db, server.url)
            doc = db.get("photo-000007")
            assert doc is not None and db.read_blob(doc.body["photo"]["digest"]) == attachment_bytes(7)
            assert db.document_count() == n
            result = {"seconds": seconds, "mb_per_s": n * 16384 / seconds / 1e6}
        elif scenario == "s3":
            result = await edit_latency(db, server)
        else:
            result = await conflicts(db, server)
    finally:
        db.close()
        await server.stop()
    result["rss_client_mib"] = peak_rss_mib()
    result["rss_server_mib"] = server.rss
    return result


async def edit_latency(db: Database, server: Server, edits: int = 200) -> dict[str, Any]:
    watch = RevisionWatch(db)
    replicator = Replicator(ReplicatorConfiguration(db, server.url, continuous=True))
    start = time.perf_counter()
    replicator.start()
    await idle(replicator)
    catch_up = time.perf_counter() - start
    assert db.document_count() == 1000
    await asyncio.sleep(0.5)  # as the scenario does: let the first sync settle before editing
    e2e, propagation = [], []
    for k in range(1, edits + 1):
        asked = time.monotonic_ns()
        rev, committed = await server.edit("item-000001", k)
        seen = await watch.wait("item-000001", rev)
        e2e.append((seen - asked) / 1e6)
        propagation.append((seen - committed) / 1e6)
    await replicator.stop()
    doc = db.get("item-000001")
    assert doc is not None and doc.body["value"] == edits
    return {
        "catch_up_ms": catch_up * 1e3,
        "e2e_median_ms": statistics.median(e2e),
        "e2e_p95_ms": nearest_rank(e2e, 0.95),
        "propagation_median_ms": statistics.median(propagation),
        "propagation_p95_ms": nearest_rank(propagation, 0.95),
    }


async def conflicts(db: Database, server: Server, rounds: int = 10) -> dict[str, Any]:
    watch = RevisionWatch(db)
    config = ReplicatorConfiguration(db, server.url, continuous=True)
    replicator = Replicator(config)
    replicator.start()
    await idle(replicator)
    times = []
    for r in range(1, rounds + 1):
        doc_id = f"conflict-{r:06d}"
        server.send(f"watch {doc_id}")
        rev1, _ = await server.edit(doc_id, 0)
        await watch.wait(doc_id, rev1)
        await replicator.stop()
        await server.edit(doc_id, 1)  # side A
        db.save(doc_id, {"value": 2, "side": "B"})  # side B, also from rev 1
        a_rev, a_stamp = "", 0
        while not server.changes.empty():
            line = server.changes.get_nowait()
            a_rev, a_stamp = line[2], int(line[4])
        replicator = Replicator(config)
        start = time.monotonic_ns()
        replicator.start()
        # converged: both sides hold the same winning revision, with no conflict; checked at every
        # change. Its time is the later of the two moments each side's feed said so (the listener
        # stamps its lines in its observer, on the same clock), as PouchDB's harness takes the
        # later of its push and pull change events.
        while not ((local := db.get(doc_id)) is not None and local.rev_id == a_rev and not local.conflicted):
            watch.changed.clear()
            remote_change = asyncio.ensure_future(server.changes.get())
            waiter = asyncio.ensure_future(watch.changed.wait())
            await asyncio.wait([remote_change, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if remote_change.done():
                line = remote_change.result()
                if line[1] == doc_id and line[3] == "0":
                    a_rev, a_stamp = line[2], int(line[4])
            else:
                remote_change.cancel()
        local_stamp, conflicted = watch.seen[(doc_id, a_rev)]
        assert not conflicted
        times.append((max(local_stamp, a_stamp) - start) / 1e6)
    await replicator.stop()
    return {"median_ms": statistics.median(times), "p95_ms": nearest_rank(times, 0.95), "first_ms": times[0]}


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


# -- the orchestrator --------------------------------------------------------------------------------


def seed(path: Path, scenario: str, n: int) -> None:
    with Database(path) as db:
        if scenario == "s1" or scenario == "s3":
            count = n if scenario == "s1" else 1000
            for start in range(1, count + 1, 5000):
                with db.batch() as batch:
                    for i in range(start, min(count, start + 4999) + 1):
                        batch.save(*split(item_doc(i)))
        elif scenario == "s2":
            with db.batch() as batch:
                for i in range(1, n + 1):
                    blob = db.save_blob(attachment_bytes(i), "image/jpeg")
                    doc_id, body = photo_doc(i)
                    batch.save(doc_id, {**body, "photo": blob.to_dict()})


def run(scenario: str, n: int, template: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    try:
        shutil.copytree(template, work / "a")
        # every run starts on a quiet disk: what earlier runs left in the page cache is written
        # back now, not while this run's commits flush
        os.sync()
        proc = subprocess.run(
            [sys.executable, __file__, "--client", scenario, str(work / "a"), str(work / "b"), str(n)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        return json.loads(proc.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default="s1,s2,s3,s4")
    parser.add_argument("--s1-sizes", default="10000,50000")
    parser.add_argument("--no-fsync", action="store_true", help="commit without fsync, to see what the disk costs")
    parser.add_argument(
        "--pouchdb",
        type=Path,
        action="append",
        help="results JSON of the PouchDB harness run on this machine (repeat to pool several)",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        event_loop.run(serve(args.serve))
        return
    if args.client:
        scenario, a, b, n = args.client
        print(json.dumps(event_loop.run(client(scenario, Path(a), Path(b), int(n)))))
        return
    if args.no_fsync:
        os.environ["SYNC_BENCH_NO_FSYNC"] = "1"
    reference = pouchdb_medians(args.pouchdb) if args.pouchdb else POUCHDB_RECORDED
    source = "measured here" if args.pouchdb else "recorded"
    print(f"event loop: {event_loop.loop_name()} (both sides; {event_loop.ENV_VAR}=asyncio for asyncio's own)")
    plan: list[tuple[str, str, int]] = []
    for scenario in args.scenarios.split(","):
        if scenario == "s1":
            plan += [(f"s1-{n}", "s1", int(n)) for n in args.s1_sizes.split(",")]
        elif scenario == "s2":
            plan.append(("s2", "s2", 500))
        else:
            plan.append((scenario, scenario, 0))
    for label, scenario, n in plan:
        template = Path(tempfile.mkdtemp(prefix="sync-seed-")) / "a"
        seed(template, scenario, n)
        results = [run(scenario, n, template) for _ in range(args.runs)]
        shutil.rmtree(template.parent, ignore_errors=True)
        report(label, results, reference, source)


def pouchdb_medians(files: list[Path]) -> dict[str, float]:
    """PouchDB's medians from harness result files, pooled the way RESULTS.md's headline pools them."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for file in files:
        for scenario in json.loads(file.read_text())["scenarios"]:
            runs.setdefault(scenario["name"], []).extend(scenario["runs"])

    def pick(prefix: str) -> list[dict[str, Any]]:
        return [run for name, found in runs.items() if name.startswith(prefix) for run in found]

    medians: dict[str, float] = {}
    for n in (10000, 50000):
        if found := pick(f"S1 bulk pull, N={n}"):
            medians[f"s1-{n} docs/s"] = statistics.median(r["docs_per_s"] for r in found)
    if found := pick("S2 "):
        medians["s2 MB/s"] = statistics.median(r["MB_per_s"] for r in found)
    if found := pick("S3 "):
        samples = [x for r in found for x in r["e2e_samples"]]
        medians["s3 e2e median ms"] = statistics.median(samples)
        medians["s3 e2e p95 ms"] = nearest_rank(samples, 0.95)
    if found := pick("S4 "):
        medians["s4 median ms"] = statistics.median(d["ms"] for r in found for d in r["details"])
    return medians


def report(label: str, results: list[dict[str, Any]], reference: dict[str, float], source: str) -> None:
    medians = {key: statistics.median(r[key] for r in results) for key in results[0]}
    figures = ", ".join(f"{k} {v:,.2f}" for k, v in medians.items())
    print(f"{label} (median of {len(results)} runs): {figures}")
    ratios = {
        "s1-10000": ("docs_per_s", "s1-10000 docs/s", True),
        "s1-50000": ("docs_per_s", "s1-50000 docs/s", True),
        "s2": ("mb_per_s", "s2 MB/s", True),
        "s3": ("e2e_median_ms", "s3 e2e median ms", False),
        "s4": ("median_ms", "s4 median ms", False),
    }
    if label in ratios and ratios[label][1] in reference:
        key, name, higher_is_better = ratios[label]
        theirs = reference[name]
        ratio = medians[key] / theirs if higher_is_better else theirs / medians[key]
        print(f"  vs PouchDB's {name} {theirs:,.2f} ({source}): {ratio:.1f}x better", flush=True)


if __name__ == "__main__":
    main()
