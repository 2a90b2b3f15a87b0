"""Draw the starter inventory's pictures and write its manifest.

Run from the project root to regenerate ``resources/starter/``::

    .venv/bin/python tools/draw_starter.py

Every picture is drawn here from simple shapes (no external artwork) and saved
as a JPEG at quality 75, the format the list document stores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "resources" / "starter"
SIZE = (240, 200)

Painter = Callable[[ImageDraw.ImageDraw, tuple[int, int, int]], None]


def bag(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.rounded_rectangle((75, 40, 165, 150), radius=14, fill=color, outline=(60, 50, 40), width=3)
    draw.polygon([(75, 52), (90, 28), (150, 28), (165, 52)], fill=color, outline=(60, 50, 40))
    draw.line((90, 28, 150, 28), fill=(60, 50, 40), width=3)
    draw.rectangle((95, 80, 145, 115), fill=(250, 246, 236), outline=(60, 50, 40), width=2)


def bottle(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.rectangle((108, 22, 132, 48), fill=(70, 70, 70))
    draw.rounded_rectangle((88, 45, 152, 152), radius=20, fill=color, outline=(60, 60, 60), width=3)
    draw.rectangle((92, 85, 148, 118), fill=(250, 250, 245))


def round_fruit(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    for x, y in ((78, 70), (122, 62), (100, 100)):
        draw.ellipse((x, y, x + 52, y + 52), fill=color, outline=(90, 70, 20), width=2)
        draw.ellipse((x + 12, y + 10, x + 22, y + 20), fill=(255, 255, 240))


def eggs(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.rounded_rectangle((50, 105, 190, 150), radius=8, fill=(170, 140, 100), outline=(90, 70, 40), width=2)
    for x in (58, 102, 146):
        draw.ellipse((x, 50, x + 38, 112), fill=color, outline=(120, 100, 70), width=2)


def block(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.polygon([(60, 90), (120, 60), (185, 85), (125, 118)], fill=tuple(min(255, c + 30) for c in color))
    draw.polygon([(60, 90), (125, 118), (125, 150), (60, 122)], fill=color, outline=(80, 70, 30))
    draw.polygon([(125, 118), (185, 85), (185, 117), (125, 150)], fill=tuple(max(0, c - 35) for c in color))


def loaf(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.rounded_rectangle((55, 70, 185, 145), radius=30, fill=color, outline=(100, 60, 20), width=3)
    for x in (85, 115, 145):
        draw.arc((x - 12, 78, x + 12, 110), start=200, end=340, fill=(240, 220, 180), width=4)


def jar(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.rectangle((85, 30, 155, 50), fill=(120, 80, 40), outline=(60, 40, 20), width=2)
    draw.rounded_rectangle((78, 48, 162, 152), radius=16, fill=color, outline=(90, 70, 30), width=3)
    draw.ellipse((100, 80, 140, 120), fill=(255, 250, 230))


def crate(draw: ImageDraw.ImageDraw, color: tuple[int, int, int]) -> None:
    draw.rectangle((60, 55, 180, 150), fill=color, outline=(80, 60, 30), width=3)
    for y in (80, 105, 130):
        draw.line((60, y, 180, y), fill=(80, 60, 30), width=2)


#: (name, quantity, painter, main colour, background)
ITEMS: list[tuple[str, int, Painter, tuple[int, int, int], tuple[int, int, int]]] = [
    ("Flour", 12, bag, (236, 228, 210), (214, 232, 245)),
    ("Sugar", 8, bag, (245, 245, 250), (240, 214, 224)),
    ("Rice", 14, bag, (230, 222, 190), (220, 240, 220)),
    ("Oats", 9, bag, (210, 180, 130), (250, 236, 210)),
    ("Pasta", 16, bag, (240, 205, 110), (215, 225, 250)),
    ("Coffee Beans", 5, bag, (120, 80, 50), (240, 230, 215)),
    ("Sea Salt", 7, jar, (235, 240, 245), (205, 225, 235)),
    ("Honey", 3, jar, (235, 170, 40), (250, 240, 205)),
    ("Green Tea", 9, jar, (120, 170, 90), (230, 245, 225)),
    ("Milk", 10, bottle, (250, 250, 252), (200, 225, 250)),
    ("Olive Oil", 4, bottle, (160, 170, 50), (245, 240, 210)),
    ("Eggs", 36, eggs, (245, 225, 195), (235, 235, 225)),
    ("Lemons", 20, round_fruit, (250, 220, 50), (215, 235, 215)),
    ("Oranges", 18, round_fruit, (245, 150, 40), (225, 235, 250)),
    ("Butter", 6, block, (250, 225, 120), (225, 215, 240)),
    ("Cheddar", 5, block, (240, 170, 60), (240, 225, 215)),
    ("Sourdough", 11, loaf, (200, 140, 70), (245, 230, 210)),
    ("Potatoes", 25, crate, (180, 140, 90), (230, 240, 215)),
]


def picture(name: str, painter: Painter, color: tuple[int, int, int], background: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", SIZE, background)
    draw = ImageDraw.Draw(image)
    painter(draw, color)
    font = ImageFont.load_default(size=20)
    width = draw.textlength(name, font=font)
    draw.text(((SIZE[0] - width) / 2, 166), name, fill=(50, 50, 60), font=font)
    return image


def file_name(name: str) -> str:
    return name.lower().replace(" ", "-") + ".jpg"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"items": [], "fallback": "fallback.jpg"}
    for name, quantity, painter, color, background in ITEMS:
        picture(name, painter, color, background).save(OUT / file_name(name), "JPEG", quality=75)
        manifest["items"].append({"key": name, "value": quantity, "image": file_name(name)})
    picture("", crate, (190, 190, 200), (235, 235, 240)).save(OUT / "fallback.jpg", "JPEG", quality=75)
    (OUT / "inventory.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(ITEMS)} pictures and the manifest to {OUT}")


if __name__ == "__main__":
    main()
