"""Draw the app's icon at the sizes desktops ask for, into ``resources/icons/``.

Run from the project root to regenerate them::

    .venv/bin/python packaging/make_icons.py

The icon is drawn here from simple shapes (no external artwork): a crate of
goods on a teal tile, with two arrows turning around it (in sync). It is drawn
once at 1024 px and scaled down, so every size is the same picture. The PNGs
are committed (package ``inventory_resources.icons``); the bundle ships them
and the .deb installs them into the hicolor theme. ``inventory-sync.ico``
(Windows: 16 to 256 px in one file) and ``inventory-sync.icns`` (macOS: 16 to
512 px) are written next to them for the spec's executables there; they are
build inputs, not package data.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "resources" / "icons"
#: hicolor theme sizes (16-256 px) and 512 px for high-density screens and macOS
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
CANVAS = 1024
TEAL = (22, 128, 120)
TEAL_DARK = (14, 92, 86)
WOOD = (226, 170, 96)
WOOD_DARK = (150, 98, 44)
ARROW = (250, 250, 246)


def _arrow_arc(draw: ImageDraw.ImageDraw, start: float, end: float) -> None:
    """A thick arc around the crate ending in an arrow head (clockwise, angles in degrees)."""
    box = (150, 150, CANVAS - 150, CANVAS - 150)
    draw.arc(box, start=start, end=end, fill=ARROW, width=70)
    radius = (CANVAS - 300) / 2
    centre = CANVAS / 2
    angle = math.radians(end)
    tip_x, tip_y = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
    # the head points along the tangent (clockwise) at the arc's end
    tangent = (-math.sin(angle), math.cos(angle))
    normal = (math.cos(angle), math.sin(angle))
    head = 110
    points = [
        (tip_x + tangent[0] * head, tip_y + tangent[1] * head),
        (tip_x + normal[0] * head * 0.9, tip_y + normal[1] * head * 0.9),
        (tip_x - normal[0] * head * 0.9, tip_y - normal[1] * head * 0.9),
    ]
    draw.polygon(points, fill=ARROW)


def draw_icon() -> Image.Image:
    """The icon at 1024 px, RGBA with a transparent margin."""
    image = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((40, 40, CANVAS - 40, CANVAS - 40), radius=200, fill=TEAL, outline=TEAL_DARK, width=24)
    _arrow_arc(draw, 200, 330)
    _arrow_arc(draw, 20, 150)
    # the crate: a front face with slats, and its lid seen from above
    draw.polygon([(330, 430), (512, 360), (694, 430), (512, 500)], fill=(240, 196, 130), outline=WOOD_DARK, width=14)
    draw.rectangle((330, 430, 694, 700), fill=WOOD, outline=WOOD_DARK, width=16)
    for y in (520, 610):
        draw.line((330, y, 694, y), fill=WOOD_DARK, width=14)
    draw.line((512, 430, 512, 700), fill=WOOD_DARK, width=10)
    return image


#: sizes in the Windows .ico (Explorer asks for 16 to 256) and the macOS .icns (16 to 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512)


def main() -> None:
    """Write ``inventory-sync-<size>.png`` for every size, then the .ico and the .icns."""
    OUT.mkdir(parents=True, exist_ok=True)
    big = draw_icon()
    written = []
    for size in SIZES:
        path = OUT / f"inventory-sync-{size}.png"
        big.resize((size, size), Image.Resampling.LANCZOS).save(path, optimize=True)
        written.append(path)
    ico = OUT / "inventory-sync.ico"
    big.save(ico, sizes=[(s, s) for s in ICO_SIZES])
    icns = OUT / "inventory-sync.icns"
    largest = big.resize((max(ICNS_SIZES),) * 2, Image.Resampling.LANCZOS)
    extra = [big.resize((s, s), Image.Resampling.LANCZOS) for s in ICNS_SIZES[:-1]]
    largest.save(icns, append_images=extra)
    for path in [*written, ico, icns]:
        print(f"wrote {path.relative_to(OUT.parents[1])}")


if __name__ == "__main__":
    main()
