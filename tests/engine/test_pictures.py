"""Pictures as the list stores them: JPEG, upright, at most 1024 px, from files of bounded size."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import InventoryError
from engine.pictures import MAX_PICTURE_SIDE, picture_from_file, to_jpeg


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_transparent_png_becomes_a_jpeg_on_white() -> None:
    png = encoded(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG")
    jpeg = opened(to_jpeg(png))
    assert jpeg.format == "JPEG" and jpeg.getpixel((1, 1))[0] > 240  # type: ignore[index]


def test_a_picked_picture_is_scaled_down_and_turned_upright(tmp_path: Path) -> None:
    photo = Image.new("RGB", (3000, 2000), (10, 200, 10))
    exif = photo.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(photo, "JPEG", exif=exif.tobytes()))
    stored = opened(picture_from_file(path))
    assert stored.size == (683, MAX_PICTURE_SIDE)  # upright (portrait), longest side 1024


def test_a_small_picture_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(encoded(Image.new("RGB", (200, 100)), "PNG"))
    assert opened(picture_from_file(path)).size == (200, 100)


def test_bad_pictures_are_refused_with_their_name(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(InventoryError, match=r"text\.jpg: not a readable picture"):
        picture_from_file(tmp_path / "text.jpg")
    with pytest.raises(InventoryError, match="cannot read"):
        picture_from_file(tmp_path / "missing.jpg")
    big = tmp_path / "big.jpg"
    with big.open("wb") as out:
        out.truncate(26 * 1024 * 1024)
    with pytest.raises(InventoryError, match="at most 25 MiB"):
        picture_from_file(big)
