"""Starter inventories: the app's own, and the original sample's list file.

* The app's own starter inventory lives in ``resources/starter/`` (package
  ``inventory_resources``): ``inventory.json`` lists the items and names a
  JPEG picture for each.
* The sample's ``samplelist.json`` holds one JSON object per line, each with
  an ``items`` array of ``{"key", "value"}``. Pictures are looked up in a folder
  by the lower-cased item key (``brussels sprouts.png``), with a fallback
  picture otherwise, and re-encoded as JPEG at quality 75.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from engine.documents import canonical_json
from engine.errors import InventoryError
from engine.inventory import StarterItem, new_list_body, parse_quantity
from engine.json_codec import loads, read_json_lines
from engine.pictures import to_jpeg
from engine.revid import make_rev_id

__all__ = [
    "FALLBACK_PICTURE",
    "load_sample_list",
    "load_starter_inventory",
    "starter_list_revision",
]

#: The sample's fallback picture name (without extension) in its image folder.
FALLBACK_PICTURE = "default_food"
_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _find_picture(folder: Path, stem: str) -> Path | None:
    for suffix in _PICTURE_SUFFIXES:
        candidate = folder / (stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def load_sample_list(path: Path, images: Path | None = None) -> list[StarterItem]:
    """Read a ``samplelist.json``-style file and the pictures for its items.

    Args:
        path: the list file (one JSON object with ``items`` per line).
        images: folder of pictures named by lower-cased item key; items
            without one get ``default_food`` from that folder, or the app's
            own fallback picture.

    Raises:
        InventoryError: the file or a picture is malformed; nothing is returned.
    """
    fallback: bytes | None = None
    if images is not None and not images.is_dir():
        raise InventoryError(f"picture folder {images} does not exist")
    out: list[StarterItem] = []
    seen: set[str] = set()
    for number, value in _read(path):
        if not isinstance(value, dict) or not isinstance(value.get("items"), list):
            raise InventoryError(f"{path} line {number}: expected an object with an items array")
        for raw in value["items"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("key"), str) or not raw["key"].strip():
                raise InventoryError(f"{path} line {number}: an item has no key")
            key = raw["key"]
            if key in seen:
                raise InventoryError(f"{path}: item {key!r} appears twice")
            seen.add(key)
            picture = _find_picture(images, key.lower()) if images is not None else None
            if picture is not None:
                jpeg = _picture(picture)
            else:
                if fallback is None:
                    fallback = _fallback_picture(images)
                jpeg = fallback
            try:
                quantity = parse_quantity(raw.get("value"))
            except InventoryError as exc:
                raise InventoryError(f"{path} line {number}: item {key[:40]!r}: {exc}") from None
            out.append(StarterItem(key, quantity, jpeg))
    return out


def _fallback_picture(images: Path | None) -> bytes:
    sample_fallback = _find_picture(images, FALLBACK_PICTURE) if images is not None else None
    if sample_fallback is not None:
        return _picture(sample_fallback)
    return _starter_file("fallback.jpg")


def _starter_file(name: str) -> bytes:
    # one part per step: in a PyInstaller bundle, files() is a MultiplexedPath whose
    # joinpath takes a single part under Python 3.11
    return (resources.files("inventory_resources") / "starter" / name).read_bytes()


def load_starter_inventory() -> list[StarterItem]:
    """Return the app's own starter items with their JPEG pictures."""
    manifest = loads(_starter_file("inventory.json"))
    return [StarterItem(i["key"], parse_quantity(i["value"]), _starter_file(i["image"])) for i in manifest["items"]]


@functools.cache
def starter_list_revision() -> str:
    """The revision ID of the list a new user's database starts with.

    Revision IDs are digests of the body (:func:`~engine.revid.make_rev_id`),
    so every database seeded with this starter holds the very same first
    revision, on every computer.
    """
    return make_rev_id(None, False, canonical_json(new_list_body(load_starter_inventory())))


def _read(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        yield from read_json_lines(path)
    except (OSError, ValueError) as exc:
        raise InventoryError(str(exc)) from None


def _picture(path: Path) -> bytes:
    """A sample picture as JPEG; an error names the file."""
    try:
        return to_jpeg(path.read_bytes())
    except OSError as exc:
        raise InventoryError(f"cannot read {path}: {exc.strerror or exc}") from None
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from None
