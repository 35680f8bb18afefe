"""Reading images for the canvas: Qt's reader (EXIF orientation applied, as OpenCV does for
training, so boxes line up), a small cache, and read-ahead of the neighbours on a worker thread
so that N / P shows the next image at once."""
from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtGui import QImage, QImageIOHandler, QImageReader

__all__ = ["read_image", "image_size", "ImageCache"]


def read_image(path) -> tuple[QImage | None, str]:
    """``(image, "")`` or ``(None, reason)`` — never raises for a bad file."""
    path = Path(path)
    if not path.is_file():
        return None, f"image file not found: {path}"
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read()
    if image.isNull():
        return None, f"cannot read image {path.name}: {reader.errorString()}"
    if image.format() not in (QImage.Format.Format_RGB32, QImage.Format.Format_ARGB32,
                              QImage.Format.Format_ARGB32_Premultiplied):
        image = image.convertToFormat(QImage.Format.Format_RGB32)
    return image, ""


def image_size(path) -> tuple[int, int] | None:
    """``(width, height)`` as shown (after EXIF rotation), from the file header only."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if not size.isValid():
        return None
    w, h = size.width(), size.height()
    if reader.transformation() & QImageIOHandler.Transformation.TransformationRotate90:
        w, h = h, w
    return w, h


class ImageCache:
    """The last ``capacity`` images read, and the ones being read ahead, by path."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Future] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detscope-images")

    def get(self, path) -> tuple[QImage | None, str]:
        """The image, from the cache, from a read-ahead in flight, or read now on this thread."""
        key = str(path)
        with self._lock:
            future = self._entries.get(key)
        if future is not None:
            return future.result()
        result = read_image(key)
        if result[0] is not None:
            done: Future = Future()
            done.set_result(result)
            self._store(key, done)
        return result

    def _store(self, key: str, future: Future) -> None:
        with self._lock:
            self._entries[key] = future
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def prefetch(self, paths) -> None:
        for path in paths:
            self._future(path)

    def _future(self, path) -> Future:
        key = str(path)
        with self._lock:
            future = self._entries.get(key)
        if future is None:
            future = self._pool.submit(read_image, key)
            self._store(key, future)
        return future

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
