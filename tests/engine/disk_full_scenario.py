"""Databases on a full file system; run by test_lmdb_store.py on a tiny private tmpfs.

Usage: ``python -m tests.engine.disk_full_scenario DIR SCENARIO``, where DIR
is the (otherwise empty) root of a small tmpfs. Prints one JSON object with
what happened; exits normally whatever the store did (a crash of the store,
SIGBUS for instance, shows as a signal exit status).

Scenarios:

``create``
    For several amounts of free space, from none to a few pages: try to
    create a database, then free the space and open it again.
``commits``
    Save documents until the disk is full, check the database after the
    failed commit, then free the space, reopen, and check every acknowledged
    save.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from engine.database import Database
from engine.errors import DiskFullError, StorageError

PAGE = 4096


def fill(root: Path, leave: int = 0) -> Path:
    """Fill the file system at ``root`` with a filler file, leaving ``leave`` bytes free."""
    filler = root / f"filler-{len(list(root.glob('filler-*')))}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        block = bytes(64 * 1024)
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == PAGE:
                    break
                block = bytes(PAGE)
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(0, size - leave))
    finally:
        os.close(fd)
    return filler


def free(root: Path) -> None:
    for filler in root.glob("filler-*"):
        filler.unlink()


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "disk_full": isinstance(exc, DiskFullError),
        "cause_code": getattr(exc.__cause__, "code", None),  # LMDB's error code (an errno here)
    }


def create(root: Path) -> dict[str, Any]:
    outcomes = []
    for pages in (0, 1, 2, 3, 4, 6, 8, 12, 16):
        where = root / f"db-{pages}"
        fill(root, pages * PAGE)
        outcome: dict[str, Any] = {"free_pages": pages, "path": str(where)}
        try:
            with Database(where) as database:
                database.save("first", {"v": 1})
            outcome["created"] = True
        except StorageError as exc:
            outcome["created"] = False
            outcome["error"] = error_info(exc)
        free(root)
        try:  # with space again, the database opens and works
            with Database(where) as database:
                database.save("second", {"v": 2})
                outcome["after_freeing"] = sorted(database.doc_ids())
        except StorageError as exc:
            outcome["after_freeing_error"] = error_info(exc)
        outcomes.append(outcome)
    return {"outcomes": outcomes}


def commits(root: Path) -> dict[str, Any]:
    where = root / "db"
    result: dict[str, Any] = {"path": str(where), "errors": []}
    acknowledged: dict[str, dict[str, Any]] = {}
    failed: list[str] = []

    def save(database: Database, doc_id: str, body: dict[str, Any]) -> bool:
        try:
            database.save(doc_id, body)
        except StorageError as exc:
            result["errors"].append(error_info(exc))
            failed.append(doc_id)
            return False
        acknowledged[doc_id] = body
        return True

    with Database(where) as database:
        for i in range(20):
            save(database, f"early{i:02d}", {"i": i, "pad": "e" * 500})
        fill(root, PAGE)
        # one value of 16 pages written in one go into one free page: a short write
        save(database, "big", {"pad": "b" * 65536})
        # small saves reuse pages freed by earlier commits until none is left
        for i in range(10_000):
            if not save(database, f"small{i:05d}", {"i": i, "pad": "s" * 300}):
                break
        # the database stays usable: reads see every acknowledged save and nothing of the failed ones
        result["failed_absent"] = all(database.get(doc_id) is None for doc_id in failed)
        result["ids_after_failure"] = database.doc_ids() == sorted(acknowledged)
    free(root)
    with Database(where) as database:
        result["missing_after_reopen"] = [
            doc_id for doc_id, body in acknowledged.items() if (doc := database.get(doc_id)) is None or doc.body != body
        ]
        result["failed_absent_after_reopen"] = all(database.get(doc_id) is None for doc_id in failed)
        result["ids_after_reopen"] = database.doc_ids() == sorted(acknowledged)
        result["saved_after_reopen"] = save(database, "later", {"v": 1})
    result["acknowledged"] = len(acknowledged)
    result["failed"] = failed
    return result


def main() -> None:
    root, scenario = Path(sys.argv[1]), sys.argv[2]
    result = {"create": create, "commits": commits}[scenario](root)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
