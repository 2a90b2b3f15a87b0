"""Thumbnails of item pictures: read and decoded on the database thread, cached by digest.

:meth:`ThumbnailCache.get` answers at once (None while loading) and asks for
the picture in the background; :attr:`ThumbnailCache.ready` says when a
thumbnail arrived so the model repaints its rows. ``QImage`` may be used off
the GUI thread; the ``QPixmap`` is made on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from engine.errors import EngineError
from inventory_qt.session import Session

__all__ = ["THUMBNAIL_SIZE", "ThumbnailCache", "decode_thumbnail"]

log = logging.getLogger(__name__)

#: Side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 40


def decode_thumbnail(data: bytes, size: int = THUMBNAIL_SIZE) -> QImage:
    """A picture scaled to fit ``size`` pixels (an empty image if it cannot be decoded)."""
    image = QImage.fromData(data)
    if image.isNull():
        return image
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


def _load(session: Session, digest: str) -> QImage:
    return decode_thumbnail(session.db.read_blob(digest))


class ThumbnailCache(QObject):
    """Pictures by digest, loaded off the GUI thread."""

    ready = Signal(str)

    def __init__(self, session: Session, pending: Callable[[str], bytes | None] | None = None) -> None:
        super().__init__()
        self._session = session
        self._pending = pending
        self._pixmaps: dict[str, QPixmap] = {}
        self._loading: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def loading(self) -> bool:
        """Whether pictures are still being read."""
        return bool(self._loading)

    def get(self, digest: str) -> QPixmap | None:
        """The thumbnail, or None while it loads (``ready`` follows)."""
        pixmap = self._pixmaps.get(digest)
        if pixmap is not None:
            return pixmap
        unsaved = self._pending(digest) if self._pending is not None else None
        if unsaved is not None:  # a picture picked but not saved yet: decoded already, small
            pixmap = QPixmap.fromImage(decode_thumbnail(unsaved))
            self._pixmaps[digest] = pixmap
            return pixmap
        if digest not in self._loading and not self._session.closed:
            self._loading.add(digest)
            task = asyncio.ensure_future(self._load(digest))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return None

    async def _load(self, digest: str) -> None:
        try:
            image = await self._session.run(_load, self._session, digest)
        except (EngineError, RuntimeError) as exc:  # missing blob, or the session closed meanwhile
            log.debug("no thumbnail for %s: %s", digest, exc)
            image = QImage()
        self._pixmaps[digest] = QPixmap.fromImage(image)
        self._loading.discard(digest)
        self.ready.emit(digest)

    def cancel(self) -> None:
        """Stop loading (log out)."""
        for task in list(self._tasks):
            task.cancel()
