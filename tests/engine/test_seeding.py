from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from engine.database import Database
from engine.errors import InventoryError
from engine.inventory import LIST_DOC_ID, new_list_body, read_items, save_new_list
from engine.pictures import to_jpeg
from engine.seeding import load_sample_list, load_starter_inventory, starter_list_revision
from engine.userdata import open_user_database
from tests.conftest import SEED_DATA, needs_shared

SAMPLE = SEED_DATA / "samplelist.json"
IMAGES = SEED_DATA / "images"
WITH_PICTURES = {
    "Apples", "Asparagus", "Beets", "Blueberries", "Broccoli", "Brussels Sprouts", "Cabbage", "Cantaloupes",
    "Carrots", "Cauliflower", "Celery", "Chard", "Cherries", "Corn", "Cucumbers", "Eggplant", "Garlic", "Grapes",
    "Kale", "Leeks", "Lettuce", "Mushrooms", "Onions", "Peaches",
}  # fmt: skip


def is_jpeg(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        return image.format == "JPEG"


@needs_shared(SAMPLE)
def test_sample_list_with_pictures() -> None:
    items = load_sample_list(SAMPLE, IMAGES)
    assert len(items) == 42
    assert items[0].key == "Apples" and items[0].value == 10
    assert {i.key for i in items} >= WITH_PICTURES
    assert min(i.value for i in items) == 4 and max(i.value for i in items) == 100
    assert all(is_jpeg(i.jpeg) for i in items)
    fallback = to_jpeg((IMAGES / "default_food.png").read_bytes())
    by_key = {i.key: i.jpeg for i in items}
    assert by_key["Arugula"] == fallback  # its asset is misspelt, as in the sample
    assert sum(1 for i in items if i.jpeg == fallback) == 42 - len(WITH_PICTURES)
    assert by_key["Brussels Sprouts"] == to_jpeg((IMAGES / "brussels sprouts.png").read_bytes())


@needs_shared(SAMPLE)
def test_sample_list_without_picture_folder_uses_own_fallback() -> None:
    items = load_sample_list(SAMPLE)
    assert len({i.jpeg for i in items}) == 1 and is_jpeg(items[0].jpeg)


@needs_shared(SAMPLE)
def test_sample_list_seeds_a_database(db: Database) -> None:
    assert save_new_list(db, load_sample_list(SAMPLE, IMAGES))
    items = read_items(db)
    assert len(items) == 42
    assert len({i.image.digest for i in items if i.image}) == len(WITH_PICTURES) + 1  # shared fallback stored once


@pytest.mark.parametrize(
    "content",
    ["{bad", '{"items": 3}', '{"items":[{"key":"a","value":-1}]}', '{"items":[{"value":1}]}',
     '{"items":[{"key":"a","value":1},{"key":"a","value":2}]}'],
)  # fmt: skip
def test_sample_list_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "list.json"
    path.write_text(content)
    with pytest.raises(InventoryError):
        load_sample_list(path)


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read"):
        load_sample_list(tmp_path / "nope.json")
    (tmp_path / "l.json").write_text('{"items":[]}')
    with pytest.raises(InventoryError, match="does not exist"):
        load_sample_list(tmp_path / "l.json", tmp_path / "no-pictures")


def test_corrupt_picture_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "apples.png").write_bytes(b"not a png")
    (tmp_path / "l.json").write_text('{"items":[{"key":"Apples","value":1}]}')
    with pytest.raises(InventoryError, match="picture"):
        load_sample_list(tmp_path / "l.json", tmp_path / "pics")


def test_own_starter_inventory() -> None:
    items = load_starter_inventory()
    assert len(items) >= 12
    assert len({i.key for i in items}) == len(items)
    assert all(is_jpeg(i.jpeg) and i.value >= 0 for i in items)


@needs_shared(IMAGES)
def test_own_starter_pictures_are_not_the_samples() -> None:
    sample_bytes = {p.read_bytes() for p in IMAGES.iterdir()}
    assert not sample_bytes & {i.jpeg for i in load_starter_inventory()}


def test_every_new_users_database_starts_with_the_same_starter_revision(tmp_path: Path) -> None:
    bodies = []
    for name in ("a", "b"):
        db = open_user_database("clerk", tmp_path / name)
        try:
            doc = db.get(LIST_DOC_ID)
            assert doc is not None and doc.rev_id == starter_list_revision()
            bodies.append(doc.body)
        finally:
            db.close()
    assert bodies[0] == bodies[1] == new_list_body(load_starter_inventory())
