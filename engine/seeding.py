"""Starter inventories: the app's own, and the original sample's file formats.

* The app's own starter inventory lives in ``resources/starter/`` (package
  ``inventory_resources``): ``inventory.json`` lists the items and names a
  JPEG picture for each.
* The sample's ``samplelist.json`` holds one JSON object per line, each with
  an ``items`` array of ``{"key", "value"}``. Pictures are looked up in a folder
  by the lower-cased item key (``brussels sprouts.png``), with a fallback
  picture otherwise, and re-encoded as JPEG at quality 75.
* The sample's user allow list holds ``{"name", "password"}`` objects, one per
  line; a JSON array of the same objects is accepted too.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from engine.errors import InventoryError
from engine.inventory import StarterItem, parse_quantity
from engine.json_codec import loads

__all__ = [
    "FALLBACK_PICTURE",
    "JPEG_QUALITY",
    "AllowedUser",
    "load_allow_list",
    "load_sample_list",
    "load_starter_inventory",
    "to_jpeg",
]

JPEG_QUALITY = 75
#: The sample's fallback picture name (without extension) in its image folder.
FALLBACK_PICTURE = "default_food"
_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True, slots=True)
class AllowedUser:
    """One entry of a user allow list."""

    name: str
    password: str

    def __repr__(self) -> str:
        return f"AllowedUser(name={self.name!r}, password=<hidden>)"


def to_jpeg(data: bytes, quality: int = JPEG_QUALITY) -> bytes:
    """Re-encode a picture (PNG, JPEG, ...) as JPEG; transparency becomes white.

    Raises:
        InventoryError: the bytes are not a picture Pillow can read.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "P"):
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InventoryError(f"not a readable picture: {exc}") from None
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` for a file of one JSON value per line, or one JSON array."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read {path}: {exc}") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = loads(stripped)
        except ValueError as exc:
            raise InventoryError(f"{path}: malformed JSON: {exc}") from None
        yield from ((1, value) for value in values)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, loads(line)
        except ValueError as exc:
            raise InventoryError(f"{path} line {number}: malformed JSON: {exc}") from None


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
    for number, value in _json_lines(path):
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
                jpeg = to_jpeg(picture.read_bytes())
            else:
                if fallback is None:
                    fallback = _fallback_picture(images)
                jpeg = fallback
            out.append(StarterItem(key, parse_quantity(raw.get("value")), jpeg))
    return out


def _fallback_picture(images: Path | None) -> bytes:
    sample_fallback = _find_picture(images, FALLBACK_PICTURE) if images is not None else None
    if sample_fallback is not None:
        return to_jpeg(sample_fallback.read_bytes())
    return _starter_file("fallback.jpg")


def _starter_file(name: str) -> bytes:
    return resources.files("inventory_resources").joinpath("starter", name).read_bytes()


def load_starter_inventory() -> list[StarterItem]:
    """Return the app's own starter items with their JPEG pictures."""
    manifest = loads(_starter_file("inventory.json"))
    return [StarterItem(i["key"], parse_quantity(i["value"]), _starter_file(i["image"])) for i in manifest["items"]]


def load_allow_list(path: Path) -> list[AllowedUser]:
    """Read a user allow list (JSON lines or a JSON array of ``{"name", "password"}``).

    Raises:
        InventoryError: malformed file, missing fields or a duplicate name.
    """
    users: list[AllowedUser] = []
    names: set[str] = set()
    for number, value in _json_lines(path):
        if not isinstance(value, dict):
            raise InventoryError(f"{path} line {number}: expected an object")
        name, password = value.get("name"), value.get("password")
        if not isinstance(name, str) or not name or not isinstance(password, str):
            raise InventoryError(f"{path} line {number}: each user needs a name and a password")
        if name in names:
            raise InventoryError(f"{path}: user {name!r} appears twice")
        names.add(name)
        users.append(AllowedUser(name, password))
    return users
