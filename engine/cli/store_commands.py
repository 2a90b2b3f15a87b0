"""Commands on the local database: seed, items (add, rm), set, doc, changes, conflicts, blob, compact.

Reading commands never create a database (see :mod:`engine.cli.databases`).
Every input error names the item, file or line it is about.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path
from typing import Any

from engine.cli.databases import creating_database, existing_database
from engine.cli.output import Output, UsageError
from engine.database import Database
from engine.documents import decode_body
from engine.errors import EngineError, InvalidDocumentError, InventoryError, NotFoundError
from engine.inventory import (
    JPEG,
    LIST_DOC_ID,
    add_item,
    parse_quantity,
    read_items_or_last_valid,
    remove_item,
    replace_list,
    save_new_list,
    set_quantity,
)
from engine.json_codec import pretty
from engine.pictures import picture_from_file
from engine.seeding import load_sample_list, load_starter_inventory

__all__ = ["Subparsers", "register"]

Subparsers = Any  # argparse's private _SubParsersAction


def register(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add the local-database commands to ``commands``."""
    p = commands.add_parser("seed", parents=[common], help="create the inventory list (the app's or a sample file's)")
    p.add_argument("--from", dest="source", type=Path, metavar="FILE", help="a samplelist.json-style file")
    p.add_argument("--images", type=Path, metavar="DIR", help="folder of pictures named by item (with --from)")
    p.add_argument("--replace", action="store_true", help="replace the items of an existing list")
    p.set_defaults(handler=cmd_seed)

    items = commands.add_parser("items", parents=[common], help="list the inventory; add or remove items")
    items.set_defaults(handler=cmd_items)
    item_commands = items.add_subparsers(dest="items_command", required=False, metavar="ACTION")
    p = item_commands.add_parser("add", parents=[common], help="add an item")
    p.add_argument("name", metavar="NAME")
    p.add_argument("quantity", metavar="QTY")
    p.add_argument("--picture", type=Path, metavar="FILE", help="a picture (scaled to 1024 px, stored as JPEG)")
    p.set_defaults(handler=cmd_items_add)
    p = item_commands.add_parser("rm", parents=[common], help="remove an item")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_items_rm)

    p = commands.add_parser("set", parents=[common], help="set an item's quantity")
    p.add_argument("key", metavar="NAME")
    p.add_argument("quantity", metavar="QTY")
    p.set_defaults(handler=cmd_set)

    doc = commands.add_parser("doc", parents=[common], help="read and write raw documents")
    doc_commands = doc.add_subparsers(dest="doc_command", required=True, metavar="ACTION")
    p = doc_commands.add_parser("get", parents=[common], help="print a document")
    p.add_argument("doc_id", metavar="ID")
    p.add_argument("--deleted", action="store_true", help="print the tombstone of a deleted document")
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
    p = blob_commands.add_parser("get", parents=[common], help="write a blob's bytes to a file or a pipe")
    p.add_argument("digest", metavar="DIGEST")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE (stdout must not be a terminal)")
    p.set_defaults(handler=cmd_blob_get)

    p = commands.add_parser("compact", parents=[common], help="drop old revisions and unused blobs")
    p.set_defaults(handler=cmd_compact)


# -- the list -------------------------------------------------------------------------------


def cmd_seed(args: argparse.Namespace, out: Output) -> int:
    """Create the list from the app's starter inventory or a sample file (all checked before anything is stored)."""
    if args.images is not None and args.source is None:
        raise UsageError("--images needs --from FILE")
    items = load_sample_list(args.source, args.images) if args.source else load_starter_inventory()
    with creating_database(args, out, seed=False) as db:
        current = db.get(LIST_DOC_ID)
        if current is not None and not current.deleted and not args.replace:
            count = len(read_items_or_last_valid(db).items)
            raise EngineError(f"user {args.user!r} already has a list ({count} items); seed --replace replaces them")
        if current is None or current.deleted:
            if not save_new_list(db, items):  # another process created one meanwhile
                replace_list(db, items)
        else:
            replace_list(db, items)
    source = str(args.source) if args.source else "the starter inventory"
    verb = "replaced the list with" if current is not None and not current.deleted else "seeded"
    out.record(
        {"event": "seeded", "items": len(items), "source": source, "replaced": verb != "seeded"},
        f"{verb} {len(items)} items from {source}",
    )
    return 0


def cmd_items(args: argparse.Namespace, out: Output) -> int:
    """Print every item with its quantity and picture digest (a damaged list: its last valid revision)."""
    with existing_database(args) as db:
        reading = read_items_or_last_valid(db)
    if reading.problem is not None:
        out.warning(reading.problem)
    width = max((len(i.key) for i in reading.items), default=0)
    for item in reading.items:
        digest = item.image.digest if item.image else None
        out.result(
            {"key": item.key, "value": item.value, "image": digest},
            f"{item.key:<{width}}  {item.value:>6}  {digest or '-'}",
        )
    return 0


def cmd_items_add(args: argparse.Namespace, out: Output) -> int:
    """Add an item, with a picture from a file."""
    quantity = _quantity(args.name, args.quantity)
    jpeg = picture_from_file(args.picture) if args.picture is not None else None
    with creating_database(args, out, seed=True) as db:
        image = db.save_blob(jpeg, JPEG) if jpeg is not None else None
        doc = add_item(db, args.name, quantity, image)
    key = _stored_key(args.name)
    out.record({"event": "added", "key": key, "value": quantity, "rev": doc.rev_id}, f"added {key} = {quantity}")
    return 0


def cmd_items_rm(args: argparse.Namespace, out: Output) -> int:
    """Remove an item."""
    with existing_database(args) as db:
        doc = remove_item(db, args.name)
    out.record({"event": "removed", "key": args.name, "rev": doc.rev_id}, f"removed {args.name}")
    return 0


def cmd_set(args: argparse.Namespace, out: Output) -> int:
    """Set one item's quantity."""
    quantity = _quantity(args.key, args.quantity)
    with creating_database(args, out, seed=True) as db:
        doc = set_quantity(db, args.key, quantity)
    key = _stored_key(args.key)
    out.record({"key": key, "value": quantity, "rev": doc.rev_id}, f"{key} = {quantity}")
    return 0


def _quantity(name: str, text: str) -> int:
    try:
        return parse_quantity(text)
    except InventoryError as exc:
        raise InventoryError(f"{name}: {exc}") from None


def _stored_key(typed: str) -> str:
    """The name as stored: item names are kept in Unicode normalization form NFC."""
    return unicodedata.normalize("NFC", typed)


# -- documents ------------------------------------------------------------------------------


def cmd_doc_get(args: argparse.Namespace, out: Output) -> int:
    """Print a document's current revision (a deleted one only with ``--deleted``)."""
    with existing_database(args) as db:
        doc = db.get(args.doc_id)
    if doc is None:
        raise NotFoundError(f"no document {args.doc_id!r}")
    if doc.deleted and not args.deleted:
        raise NotFoundError(f"document {args.doc_id!r} is deleted (at {doc.rev_id}); --deleted prints its tombstone")
    record: dict[str, Any] = {"_id": doc.id, "_rev": doc.rev_id}
    if doc.deleted:
        record["_deleted"] = True
    if doc.conflicted:
        record["_conflicted"] = True
    record.update(doc.body)
    out.result(record, pretty(record))
    return 0


def cmd_doc_put(args: argparse.Namespace, out: Output) -> int:
    """Save a document from JSON text (an argument, or standard input with ``-``)."""
    if args.body == "-":
        data = sys.stdin.buffer.read()
        _utf8(data, "standard input")
    else:
        data = _argument_bytes(args.body, "the JSON argument")
    try:
        body = decode_body(data)
    except InvalidDocumentError as exc:
        raise InvalidDocumentError(f"{args.doc_id}: the document body is not a JSON object: {exc}") from None
    with creating_database(args, out, seed=False) as db:
        doc = db.save(args.doc_id, body)
    out.record({"id": doc.id, "rev": doc.rev_id}, f"saved {doc.id} {doc.rev_id}")
    return 0


def cmd_doc_rm(args: argparse.Namespace, out: Output) -> int:
    """Delete a document."""
    with existing_database(args) as db:
        doc = db.delete(args.doc_id)
    out.record({"id": doc.id, "rev": doc.rev_id, "deleted": True}, f"deleted {doc.id} {doc.rev_id}")
    return 0


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidDocumentError(f"{what} is not UTF-8 text (byte {data[exc.start]:#04x} at {exc.start})") from None


def _argument_bytes(text: str, what: str) -> bytes:
    """An argument as UTF-8 (bytes that are not UTF-8 reach Python as lone surrogates)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", errors="surrogateescape")
        _utf8(raw, what)
        return raw


# -- the rest ----------------------------------------------------------------------------------


def cmd_changes(args: argparse.Namespace, out: Output) -> int:
    """Print the changes feed after a sequence."""
    with existing_database(args) as db:
        rows = db.changes_since(args.since, args.limit)
    for row in rows:
        out.result(
            {"seq": row.sequence, "id": row.doc_id, "rev": row.rev_id, "deleted": row.deleted},
            f"{row.sequence:>8}  {row.doc_id}  {row.rev_id}{'  deleted' if row.deleted else ''}",
        )
    return 0


def cmd_conflicts(args: argparse.Namespace, out: Output) -> int:
    """Print documents in conflict with their live leaf revisions."""
    with existing_database(args) as db:
        rows = _conflicts(db)
    for doc_id, leaves in rows:
        out.result({"id": doc_id, "revs": leaves}, f"{doc_id}  {' '.join(leaves)}")
    return 0


def _conflicts(db: Database) -> list[tuple[str, list[str]]]:
    rows = []
    for doc_id in db.conflicted_doc_ids():
        tree = db.get_tree(doc_id)
        rows.append((doc_id, [n.rev_id for n in tree.live_leaves()] if tree else []))
    return rows


def cmd_blob_get(args: argparse.Namespace, out: Output) -> int:
    """Write a blob's verified bytes to a file or to a pipe (never to a terminal)."""
    if args.output is None and sys.stdout.isatty():
        raise UsageError("a blob is binary: give --output FILE, or redirect standard output to a file or a pipe")
    with existing_database(args) as db:
        data = db.read_blob(args.digest)
    if args.output is None:
        out.raw(data)
    else:
        args.output.write_bytes(data)
        out.record({"event": "written", "path": str(args.output), "bytes": len(data)}, f"wrote {len(data)} bytes")
    return 0


def cmd_compact(args: argparse.Namespace, out: Output) -> int:
    """Compact the database."""
    with existing_database(args) as db:
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
