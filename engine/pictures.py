"""Pictures in the inventory: JPEG, at the sample's quality.

Pillow does the work, so the engine needs no Qt to convert the sample's PNG
pictures or a picture a user picks.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from engine.errors import InventoryError

__all__ = ["JPEG_QUALITY", "to_jpeg"]

#: The sample's JPEG quality.
JPEG_QUALITY = 75


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
