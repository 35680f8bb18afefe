"""An image's size from its file header, without decoding the pixels.

Readers of normalised formats (YOLO) need each image's size; decoding every image to learn it
would take minutes on a large dataset. Pillow (installed with matplotlib) opens files lazily:
``Image.open`` reads the header only. The size is the one shown and trained on: an EXIF
orientation of 5-8 (a quarter turn) swaps width and height, as ``cv2.imdecode`` (training) and
the window's Qt reader both apply it. A file Pillow cannot read is decoded with OpenCV instead.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["read_image_size"]

_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)


def read_image_size(path) -> tuple[int, int] | None:
    """``(width, height)`` of the image file ``path`` as displayed, or ``None`` when it is
    missing or not an image."""
    path = Path(path)
    if not path.is_file():
        return None
    size = _header_size(path)
    return size if size is not None else _decoded_size(path)


def _header_size(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:                       # pragma: no cover - Pillow comes with matplotlib
        return None
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    if width <= 0 or height <= 0:
        return None
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _decoded_size(path: Path) -> tuple[int, int] | None:
    from .errors import ImageReadError
    from .folder import read_image
    try:
        height, width = read_image(path).shape[:2]
    except ImageReadError:
        return None
    return width, height
