"""Replication message bodies and properties (protocol §3)."""

from __future__ import annotations

import pytest

from engine.changes import ChangeEntry
from engine.replication.errors import BlipError
from engine.replication.messages import (
    add_legacy_attachments,
    encode_changes_reply,
    encode_changes_rows,
    encode_proposal_reply,
    is_compressible,
    parse_bool,
    parse_changes_reply,
    parse_changes_rows,
    parse_proposal_reply,
    parse_proposed,
    parse_rev,
    rev_properties,
    strip_special_properties,
)

R1 = "1-" + "a" * 40
R2 = "2-" + "b" * 40


@pytest.mark.parametrize(("text", "value"), [("true", True), ("YES", True), ("1", True), ("7", True), ("false", False), ("No", False), ("0", False), (None, False), ("junk", False)])  # fmt: skip
def test_parse_bool(text: str | None, value: bool) -> None:
    assert parse_bool(text) is value


def test_changes_rows_both_flag_styles() -> None:
    body = b'[[1,"a","%s"],[2,"b","%s",true],[3,"c","%s",1,120],["4:1","d","%s",4],[5,"e","%s",false,9]]' % (
        R1.encode(), R1.encode(), R1.encode(), R1.encode(), R1.encode())  # fmt: skip
    rows = parse_changes_rows(body)
    assert [(r.sequence, r.deleted, r.removed, r.body_size) for r in rows] == [
        (1, False, False, 0), (2, True, False, 0), (3, True, False, 120), ("4:1", False, True, 0), (5, False, False, 9)
    ]  # fmt: skip
    assert parse_changes_rows(b"[]") == [] and parse_changes_rows(b"null") == []
    for bad in (b"{}", b"[1]", b"[[1,2,3]]", b"nope"):
        with pytest.raises(BlipError):
            parse_changes_rows(bad)


@pytest.mark.parametrize(
    ("flags", "deleted", "removed"),
    [
        (0, False, False),
        (1, True, False),  # a tombstone
        (2, False, True),  # access revoked
        (3, True, True),  # revoked, deleted
        (4, False, True),  # removed from the user's channels
        (5, True, False),  # a tombstone that also left the channels: still a revision to fetch (LiteCore)
        (6, False, True),
        (7, True, True),
    ],
)
def test_changes_row_flags_are_bits(flags: int, deleted: bool, removed: bool) -> None:
    """Protocol §3.5, read as LiteCore's RevFinder::findRevs reads the fourth element."""
    (row,) = parse_changes_rows(b'[[1,"a","%s",%d]]' % (R1.encode(), flags))
    assert (row.deleted, row.removed) == (deleted, removed)


def test_changes_rows_encoding() -> None:
    rows = [ChangeEntry(1, "a", R1), ChangeEntry(2, "b", R2, deleted=True), ChangeEntry(3, "c", R1, body_size=50)]
    assert encode_changes_rows(rows, int_flags=True) == (
        b'[[1,"a","%s"],[2,"b","%s",1],[3,"c","%s",0,50]]' % (R1.encode(), R2.encode(), R1.encode())
    )
    assert b"true" in encode_changes_rows(rows, int_flags=False)


def test_changes_reply() -> None:
    assert encode_changes_reply([None, [R1], [], None]) == b'[0,["%s"],[]]' % R1.encode()
    assert parse_changes_reply(b'[0,["x"],409]', 4) == [None, ["x"], 409, None]
    with pytest.raises(BlipError):
        parse_changes_reply(b"garbage", 1)


def test_proposals() -> None:
    assert parse_proposed(b'[["a","%s"],["b","%s","%s",10],["c","%s",""]]' % (R1.encode(), R2.encode(), R1.encode(), R1.encode())) == [
        ("a", R1, None, 0), ("b", R2, R1, 10), ("c", R1, None, 0)
    ]  # fmt: skip
    body = encode_proposal_reply([(0, None), (409, R1), (304, R2), (0, None)], include_rev=True)
    assert body == b'[0,{"status":409,"rev":"%s"},304]' % R1.encode()
    assert parse_proposal_reply(body, 4) == [(0, None), (409, R1), (304, None), (0, None)]
    assert encode_proposal_reply([(409, R1)], include_rev=False) == b"[409]"
    with pytest.raises(BlipError):
        parse_proposed(b'[["a"]]')


def test_rev_properties_round_trip() -> None:
    props = rev_properties("doc", R2, [R1], sequence=17, deleted=True, no_conflicts=True, delta_src=R1)
    assert props == {
        "id": "doc",
        "rev": R2,
        "sequence": "17",
        "history": R1,
        "deleted": "1",
        "noconflicts": "true",
        "deltaSrc": R1,
    }
    rev = parse_rev(props, b"{}")
    assert (rev.doc_id, rev.history, rev.deleted, rev.no_conflicts, rev.delta_src) == ("doc", [R1], True, True, R1)
    assert parse_rev({"id": "d", "rev": R2, "history": f"{R1}, {R1}"}, b"").history == [R1, R1]


@pytest.mark.parametrize(
    "props",
    [{"rev": R1}, {"id": "d", "rev": "1-abc"}, {"id": "d", "rev": "x"}, {"id": "d", "rev": R2, "history": "bad"}],
)
def test_invalid_revs_are_400(props: dict[str, str]) -> None:
    with pytest.raises(BlipError) as info:
        parse_rev(props, b"{}")
    assert info.value.code == 400


def test_strip_special_properties() -> None:
    body = {"a": 1, "_id": "x", "_rev": "y", "_attachments": {"blob_/p": {"digest": "d"}, "file": {"digest": "e"}}}
    assert strip_special_properties(body) == {"a": 1, "_attachments": {"file": {"digest": "e"}}}
    assert strip_special_properties({"_attachments": {"blob_/p": {}}}) == {}


@pytest.mark.parametrize(("kind", "compress"), [("text/plain", True), ("application/json", True), ("image/jpeg", False), ("application/zip", False), (None, False), ("application/octet-stream", False)])  # fmt: skip
def test_compressible_types(kind: str | None, compress: bool) -> None:
    assert is_compressible(kind) is compress


def test_legacy_attachments_for_peers_without_blob_support() -> None:
    blob = {"@type": "blob", "digest": "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "length": 11, "content_type": "text/plain"}
    body = {"items": [{"key": "a", "image": blob}], "a/b": blob}
    out = add_legacy_attachments(body, 3)
    stub = {"digest": blob["digest"], "length": 11, "content_type": "text/plain", "stub": True, "revpos": 3}
    assert out["_attachments"] == {"blob_/items/0/image": stub, "blob_/a~1b": stub}
    assert out["items"] == body["items"]
    assert add_legacy_attachments({"x": 1}, 1) == {"x": 1}
    assert strip_special_properties(out) == body  # and a receiver drops the stand-ins again
