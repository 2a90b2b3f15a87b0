"""Pictures in the inventory: JPEG, at the sample's quality.

Pillow does the work, so the engine needs no Qt to convert the sample's PNG
pictures or a picture a user picks.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InventoryError

__all__ = ["JPEG_QUALITY", "MAX_PICTURE_FILE", "MAX_PICTURE_SIDE", "picture_from_file", "to_jpeg"]

#: The sample's JPEG quality.
JPEG_QUALITY = 75
#: Longest side of a picture a user adds, in pixels: enough for a list on any screen.
MAX_PICTURE_SIDE = 1024
#: Largest picture file a user may add (a phone's photo is a few MB).
MAX_PICTURE_FILE = 25 * 1024 * 1024


def to_jpeg(data: bytes, quality: int = JPEG_QUALITY, *, max_side: int | None = None) -> bytes:
    """Re-encode a picture (PNG, JPEG, ...) as JPEG; transparency becomes white.

    A photo is turned upright as its EXIF orientation says; with ``max_side``,
    a bigger picture is scaled down to fit (aspect kept).

    Raises:
        InventoryError: the bytes are not a picture Pillow can read, or one too
            large to decode safely.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
            if max_side is not None and max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            if image.mode in ("RGBA", "LA", "P", "PA"):
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = image.convert("RGB")
    except Image.DecompressionBombError:
        raise InventoryError("the picture has too many pixels to open safely") from None
    except UnidentifiedImageError:
        raise InventoryError("not a readable picture (PNG, JPEG, GIF, WebP, BMP or TIFF)") from None
    except (OSError, ValueError) as exc:
        raise InventoryError(f"not a readable picture: {exc}") from None
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=quality)
    return out.getvalue()


def picture_from_file(path: Path) -> bytes:
    """A picture a user picked, as stored: JPEG, at most MAX_PICTURE_SIDE pixels on its longest side.

    Raises:
        InventoryError: unreadable, not a picture, or a file above MAX_PICTURE_FILE.
    """
    try:
        size = path.stat().st_size
        if size > MAX_PICTURE_FILE:
            raise InventoryError(
                f"{path}: the picture file is {size / 1e6:.1f} MB; at most {MAX_PICTURE_FILE // 2**20} MiB is accepted"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return to_jpeg(data, max_side=MAX_PICTURE_SIDE)
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from None
