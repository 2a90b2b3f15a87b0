"""The list document's schema: what a valid inventory list is (engine/list_schema)."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest

from engine import list_schema
from engine.blobs import Blob, digest_of
from engine.errors import InvalidDocumentError, InventoryError
from engine.list_schema import (
    LIST_DOC_ID,
    MAX_EDIT,
    MAX_KEY_LENGTH,
    MAX_QUANTITY,
    InvalidListError,
    Item,
    check_list_body,
    parse_quantity,
    validate_list_revision,
)


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (7, 7), ("12", 12), (" 5 ", 5), (MAX_QUANTITY, MAX_QUANTITY)])
def test_parse_quantity_accepts(value: object, expected: int) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "1.5", 1.5, True, None, "", "abc", "\uff11\uff12", MAX_QUANTITY + 1, "+3"])
def test_parse_quantity_refuses(value: object) -> None:
    with pytest.raises(InventoryError):
        parse_quantity(value)


DIGEST = digest_of(b"picture")
PICTURE = {"@type": "blob", "digest": DIGEST, "length": 7, "content_type": "image/jpeg"}


def test_check_list_body_accepts_a_valid_list() -> None:
    body = {
        "type": "list",
        "title": "kitchen",  # other top-level properties are free
        "items": [
            {"key": "Flour", "value": 0, "image": PICTURE, "edit": 3},
            {"key": "Crème brûlée", "value": MAX_QUANTITY},
            {"key": "\U0001f468\u200d\U0001f469\u200d\U0001f467 snacks", "value": 1},  # emoji joined by ZWJ
            {"key": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "value": 2},  # Persian, with a ZWNJ
            {"key": "Tea\u00a0bags", "value": 4, "image": None, "unit": "box"},  # null picture, extra property
            {"key": "x" * MAX_KEY_LENGTH, "value": 5, "edit": MAX_EDIT},
        ],
    }
    items = check_list_body(body)
    assert items[0] == Item("Flour", 0, Blob(DIGEST, 7, "image/jpeg"), 3)
    assert [i.key for i in items[1:]] == [raw["key"] for raw in body["items"][1:]]  # type: ignore[index]
    assert items[4].image is None and items[5].edit == MAX_EDIT
    assert check_list_body({"items": []}) == []
    validate_list_revision(LIST_DOC_ID, body, False)


def item(**fields: object) -> dict[str, object]:
    return {"key": "Milk", "value": 1, **fields}


MALFORMED: list[tuple[object, str]] = [
    # (body, a part of the message)
    ({"items": [{"value": 1}, {"key": "Eggs", "value": "many"}]}, "item 0 has no key"),
    ({"items": [{"key": "Flour", "value": 1}, {"key": "Eggs", "value": "many"}]}, "item 1 ('Eggs'): the quantity"),
    ({"items": "notalist"}, "items are a string, not an array"),
    ({"type": "list"}, "no items array"),
    ([], "the list is an array, not an object"),
    ("list", "the list is a string"),
    ({"items": {"Milk": 1}}, "items are an object"),
    ({"items": [item(), 3]}, "item 1 is a number, not an object"),
    ({"items": [item(), None]}, "item 1 is null"),
    ({"items": [item(key=7)]}, "item 0: the name is a number"),
    ({"items": [item(key="")]}, "item 0 (''): the name is empty"),
    ({"items": [item(key="   ")]}, "only whitespace"),
    ({"items": [item(key="\u00a0\u200d")]}, "only whitespace"),
    ({"items": [item(), item(value=2)]}, "item 1 ('Milk'): item 0 has the same name"),
    ({"items": [item(key="e\u0301clair")]}, "not in Unicode normalization form NFC"),
    ({"items": [item(key="\u00e9clair"), item(key="e\u0301clair")]}, "item 1 ('e\u0301clair'): the name is not in"),
    ({"items": [item(key="Milk\nEggs")]}, "control or format character U+000A"),
    ({"items": [item(key="Milk\r")]}, "U+000D"),
    ({"items": [item(key="Milk\x00")]}, "U+0000"),
    ({"items": [item(key="Milk\x85")]}, "U+0085"),
    ({"items": [item(key="Milk\u2028")]}, "U+2028"),
    ({"items": [item(key="Milk\u2029")]}, "U+2029"),
    ({"items": [item(key="Mi\u200blk")]}, "U+200B"),  # zero width space
    ({"items": [item(key="abc\u202edcb")]}, "U+202E"),  # right-to-left override
    ({"items": [item(key="Milk\ufeff")]}, "U+FEFF"),
    ({"items": [item(key="Mil\u00adk")]}, "U+00AD"),  # soft hyphen
    ({"items": [item(key="Milk\U000e0041")]}, "U+E0041"),  # a tag character
    ({"items": [item(key="Milk\ud800")]}, "U+D800"),  # a lone surrogate
    ({"items": [item(key="x" * (MAX_KEY_LENGTH + 1))]}, f"longer than {MAX_KEY_LENGTH}"),
    ({"items": [{"key": "Milk"}]}, "the quantity must be a whole number from 0 to 2147483647, not missing"),
    ({"items": [item(value=-1)]}, "not a negative number"),
    ({"items": [item(value=1.5)]}, "not a number"),
    ({"items": [item(value=1.0)]}, "not a number"),
    ({"items": [item(value="12")]}, "not a string"),
    ({"items": [item(value=True)]}, "not a boolean"),
    ({"items": [item(value=None)]}, "not null"),
    ({"items": [item(value=MAX_QUANTITY + 1)]}, "above 2147483647"),
    ({"items": [item(value=10**5000)]}, "above 2147483647"),  # too long to print: never printed
    ({"items": [item(image="picture.jpg")]}, "the picture must be a blob, not a string"),
    ({"items": [item(image={"digest": DIGEST, "length": 7})]}, "without @type blob"),
    ({"items": [item(image={**PICTURE, "digest": "sha1-nope"})]}, "bad picture: malformed blob digest"),
    ({"items": [item(image={**PICTURE, "digest": "md5-x"})]}, "bad picture: unsupported blob digest"),
    ({"items": [item(image={**PICTURE, "length": -1})]}, "bad picture"),
    ({"items": [item(image={**PICTURE, "length": "7"})]}, "bad picture"),
    ({"items": [item(image={**PICTURE, "length": True})]}, "bad picture"),
    ({"items": [item(image={**PICTURE, "content_type": 3})]}, "bad picture"),
    ({"items": [item(image={"@type": "blob", "length": 7})]}, "bad picture: blob has no digest"),
    ({"items": [item(edit="3")]}, "the edit stamp must be a whole number from 0 to"),
    ({"items": [item(edit=-1)]}, "edit stamp"),
    ({"items": [item(edit=True)]}, "edit stamp"),
    ({"items": [item(edit=None)]}, "edit stamp"),
    ({"items": [item(edit=2.0)]}, "edit stamp"),
    ({"items": [item(edit=MAX_EDIT + 1)]}, "edit stamp"),
]


@pytest.mark.parametrize(("body", "message"), MALFORMED)
def test_check_list_body_refuses_malformed_lists(body: object, message: str) -> None:
    with pytest.raises(InvalidListError, match=re.escape(message)):
        check_list_body(body)
    with pytest.raises(InvalidListError, match=f"^doc::list is not a valid inventory list: .*{re.escape(message)}"):
        validate_list_revision(LIST_DOC_ID, body, False)


def test_invalid_list_error_is_an_inventory_and_a_document_error() -> None:
    # code that refuses a bad body (InvalidDocumentError) refuses a bad list the same way
    with pytest.raises(InvalidDocumentError):
        validate_list_revision(LIST_DOC_ID, {"items": "notalist"}, False)
    with pytest.raises(InventoryError):
        check_list_body({"items": "notalist"})


def test_validate_list_revision_checks_only_live_revisions_of_the_list() -> None:
    validate_list_revision("doc::other", {"items": "notalist"}, False)
    validate_list_revision(LIST_DOC_ID, {}, True)  # a deletion
    validate_list_revision(LIST_DOC_ID, {"items": "notalist"}, True)


def test_the_blob_check_agrees_with_blob_from_dict() -> None:
    for fields in (
        {},
        {"digest": DIGEST},
        {"digest": DIGEST, "length": 0},
        {"digest": DIGEST, "length": 7, "content_type": None},
        {"digest": DIGEST, "length": 7, "content_type": ""},
        {"digest": DIGEST, "length": 7.0},
        {"digest": DIGEST + "=", "length": 7},
        {"digest": DIGEST[:-2], "length": 7},
        {"digest": "sha1-" + "A" * 27 + "=", "length": 7},
        {"digest": "sha1-é", "length": 7},
        {"digest": ["sha1-x"], "length": 7},
    ):
        try:
            Blob.from_dict(fields)
        except InvalidDocumentError:
            expected = False
        else:
            expected = True
        body = {"items": [item(image={"@type": "blob", **fields})]}
        try:
            check_list_body(body)
        except InvalidListError:
            assert not expected, fields
        else:
            assert expected, fields


def test_printable_names_hold_no_refused_character() -> None:
    # the name check skips its per-character loop for str.isprintable() names
    refused = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert not [
        c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable() and unicodedata.category(c) in refused
    ]


def test_the_spaces_dropped_around_typed_names_are_every_space_separator() -> None:
    zs = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Zs"}
    assert set(list_schema._SPACES) == zs
