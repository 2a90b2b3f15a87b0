"""Commands that work on the local database: seed, items, set, doc, changes, conflicts, blob, compact."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.cli.output import Output
from engine.database import Database
from engine.documents import decode_body
from engine.errors import EngineError, InvalidDocumentError, NotFoundError
from engine.inventory import parse_quantity, read_items_or_last_valid, save_new_list, set_quantity
from engine.json_codec import pretty
from engine.seeding import load_sample_list, load_starter_inventory
from engine.userdata import open_user_database

__all__ = ["open_database", "register"]

Subparsers = Any  # argparse's private _SubParsersAction


@contextmanager
def open_database(args: argparse.Namespace, *, seed: bool = True) -> Iterator[Database]:
    """Open the selected user's database for one command."""
    db = open_user_database(args.user, args.data_dir, seed=seed)
    try:
        yield db
    finally:
        db.close()


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the local-database commands to ``commands``."""
    p = commands.add_parser("seed", parents=[common], help="create the inventory list if there is none")
    p.add_argument("--from", dest="source", type=Path, help="a samplelist.json-style file")
    p.add_argument("--images", type=Path, help="folder of pictures named by item")
    p.set_defaults(handler=cmd_seed)

    p = commands.add_parser("items", parents=[common], help="list the inventory")
    p.set_defaults(handler=cmd_items)

    p = commands.add_parser("set", parents=[common], help="set an item's quantity")
    p.add_argument("key", metavar="KEY")
    p.add_argument("quantity", metavar="QTY")
    p.set_defaults(handler=cmd_set)

    doc = commands.add_parser("doc", parents=[common], help="read and write raw documents")
    doc_commands = doc.add_subparsers(dest="doc_command", required=True, metavar="ACTION")
    p = doc_commands.add_parser("get", parents=[common], help="print a document")
    p.add_argument("doc_id", metavar="ID")
    p.set_defaults(handler=cmd_doc_get)
    p = doc_commands.add_parser("put", parents=[common], help="save a document ('-' reads JSON from stdin)")
    p.add_argument("doc_id", metavar="ID")
    p.add_argument("body", metavar="JSON")
    p.set_defaults(handler=cmd_doc_put)
    p = doc_commands.add_parser("rm", parents=[common], help="delete a document")
    p.add_argument("doc_id", metavar="ID")
    p.set_defaults(handler=cmd_doc_rm)

    p = commands.add_parser("changes", parents=[common], help="print the changes feed")
    p.add_argument("--since", type=int, default=0, metavar="N")
    p.add_argument("--limit", type=int, default=None, metavar="N")
    p.set_defaults(handler=cmd_changes)

    p = commands.add_parser("conflicts", parents=[common], help="list documents in conflict")
    p.set_defaults(handler=cmd_conflicts)

    blob = commands.add_parser("blob", parents=[common], help="read blobs")
    blob_commands = blob.add_subparsers(dest="blob_command", required=True, metavar="ACTION")
    p = blob_commands.add_parser("get", parents=[common], help="write a blob's bytes to stdout")
    p.add_argument("digest", metavar="DIGEST")
    p.set_defaults(handler=cmd_blob_get)

    p = commands.add_parser("compact", parents=[common], help="drop old revisions and unused blobs")
    p.set_defaults(handler=cmd_compact)


def cmd_seed(args: argparse.Namespace, out: Output) -> int:
    """Create the list from the starter inventory or a sample file."""
    if args.images is not None and args.source is None:
        raise EngineError("--images needs --from")
    items = load_sample_list(args.source, args.images) if args.source else load_starter_inventory()
    with open_database(args, seed=False) as db:
        created = save_new_list(db, items)
    if created:
        out.record({"event": "seeded", "items": len(items)}, f"seeded {len(items)} items")
    else:
        out.record({"event": "unchanged", "items": 0}, "the list already exists; nothing changed")
    return 0


def cmd_items(args: argparse.Namespace, out: Output) -> int:
    """Print every item with its quantity and picture digest."""
    with open_database(args) as db:
        reading = read_items_or_last_valid(db)
    if reading.problem is not None:  # a damaged list: say so, and show its last valid revision
        out.warning(reading.problem)
    items = reading.items
    width = max((len(i.key) for i in items), default=0)
    for item in items:
        digest = item.image.digest if item.image else None
        out.record(
            {"key": item.key, "value": item.value, "image": digest},
            f"{item.key:<{width}}  {item.value:>6}  {digest or '-'}",
        )
    return 0


def cmd_set(args: argparse.Namespace, out: Output) -> int:
    """Set one item's quantity."""
    quantity = parse_quantity(args.quantity)
    with open_database(args) as db:
        doc = set_quantity(db, args.key, quantity)
    out.record({"key": args.key, "value": quantity, "rev": doc.rev_id}, f"{args.key} = {quantity}")
    return 0


def cmd_doc_get(args: argparse.Namespace, out: Output) -> int:
    """Print a document's current revision."""
    with open_database(args) as db:
        doc = db.get(args.doc_id)
    if doc is None:
        raise NotFoundError(f"no document {args.doc_id!r}")
    record: dict[str, Any] = {"_id": doc.id, "_rev": doc.rev_id}
    if doc.deleted:
        record["_deleted"] = True
    if doc.conflicted:
        record["_conflicted"] = True
    record.update(doc.body)
    out.record(record, pretty(record))
    return 0


def cmd_doc_put(args: argparse.Namespace, out: Output) -> int:
    """Save a document from JSON text."""
    text = sys.stdin.read() if args.body == "-" else args.body
    try:
        body = decode_body(text.encode())
    except InvalidDocumentError as exc:
        raise InvalidDocumentError(f"document body: {exc}") from None
    with open_database(args) as db:
        doc = db.save(args.doc_id, body)
    out.record({"id": doc.id, "rev": doc.rev_id}, f"saved {doc.id} {doc.rev_id}")
    return 0


def cmd_doc_rm(args: argparse.Namespace, out: Output) -> int:
    """Delete a document."""
    with open_database(args) as db:
        doc = db.delete(args.doc_id)
    out.record({"id": doc.id, "rev": doc.rev_id, "deleted": True}, f"deleted {doc.id} {doc.rev_id}")
    return 0


def cmd_changes(args: argparse.Namespace, out: Output) -> int:
    """Print the changes feed after a sequence."""
    with open_database(args) as db:
        rows = db.changes_since(args.since, args.limit)
    for row in rows:
        out.record(
            {"seq": row.sequence, "id": row.doc_id, "rev": row.rev_id, "deleted": row.deleted},
            f"{row.sequence:>8}  {row.doc_id}  {row.rev_id}{'  deleted' if row.deleted else ''}",
        )
    return 0


def cmd_conflicts(args: argparse.Namespace, out: Output) -> int:
    """Print documents in conflict with their live leaf revisions."""
    with open_database(args) as db:
        rows = []
        for doc_id in db.conflicted_doc_ids():
            tree = db.get_tree(doc_id)
            rows.append((doc_id, [n.rev_id for n in tree.live_leaves()] if tree else []))
    for doc_id, leaves in rows:
        out.record({"id": doc_id, "revs": leaves}, f"{doc_id}  {' '.join(leaves)}")
    return 0


def cmd_blob_get(args: argparse.Namespace, out: Output) -> int:
    """Write a blob's verified bytes to stdout."""
    with open_database(args) as db:
        data = db.read_blob(args.digest)
    out.raw(data)
    return 0


def cmd_compact(args: argparse.Namespace, out: Output) -> int:
    """Compact the database."""
    with open_database(args) as db:
        result = db.compact()
    out.record(
        {
            "bodies_removed": result.bodies_removed,
            "revisions_pruned": result.revisions_pruned,
            "blobs_removed": result.blobs_removed,
        },
        f"removed {result.bodies_removed} bodies, {result.revisions_pruned} revisions, {result.blobs_removed} blobs",
    )
    return 0
