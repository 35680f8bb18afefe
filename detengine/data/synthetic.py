"""The built-in synthetic shapes dataset: real image files plus COCO JSON, made on first use.

Content (generator version 1):

* 5 classes, :data:`SYNTHETIC_CLASSES`: ``circle`` (near-round ellipse, w/h in 0.85-1.18),
  ``square`` (w/h 0.85-1.18), ``triangle`` (isosceles, pointing up/down/left/right, w/h
  0.75-1.33), ``ring`` (a circle with a hole of 45-70 % of its radius, background shows
  through) and ``bar`` (w/h 0.3-0.5 or 2-3.3). Colour and texture (solid, two-colour stripes,
  gradient, speckle) are drawn independently of the class, so only the shape tells classes apart.
* 1-6 objects per image; the long side is tiny (8-13 px) for about 8 % of objects (circle,
  square or triangle only) and log-uniform in 22-120 px otherwise (median ~51 px in a 256 image).
* Objects may overlap: a new object goes on top only if its box IoU with every earlier box is
  <= 0.4 and every earlier object keeps >= 65 % of its pixels visible; tiny objects never touch
  another box. Boxes are the FULL (amodal) extent of each shape, which the 65 % rule keeps honest.
  Every box lies inside the image (no truncation at the border).
* Backgrounds: solid colour, linear gradient, smooth colour noise, or soft stripes; then mild
  pixel noise and sometimes a slight blur. Object colours keep a minimum distance from the
  background (and anything under them).
* Boxes come from the rendered anti-aliased mask (pixels >= 50 % coverage): ``[x_min, y_min,
  x_max + 1, y_max + 1]`` in integer pixels, so they match the image exactly.

Each image is drawn from ``np.random.default_rng([seed, split, index])`` (split 0 train, 1 val;
not ``seed + index``, which would repeat images across seeds and splits). Train images are
JPEG (quality 95), val images PNG. A manifest holding the generator version, the parameters
and the file counts is written last and atomically; a folder without a matching manifest (or
with a missing file) is regenerated, so a killed generation is never mistaken for a complete one.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..io import atomic_write_text
from .coco import write_coco
from .errors import DatasetError

__all__ = ["SYNTHETIC_CLASSES", "GENERATOR_VERSION", "SyntheticPaths", "ensure_synthetic_dataset",
           "default_synthetic_root", "generate_synthetic_image"]

SYNTHETIC_CLASSES = ["circle", "square", "triangle", "ring", "bar"]
GENERATOR_VERSION = 1
_MARKER = ".detscope-synthetic"
_MANIFEST = "manifest.json"
_SPLITS = {"train": 0, "val": 1}
_EXT = {"train": ".jpg", "val": ".png"}
_SHIFT = 4  # cv2 sub-pixel bits
_TINY_PROB = 0.08
_MIN_VISIBLE = 0.65
_MAX_IOU = 0.4


@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated synthetic dataset lives (all absolute)."""

    root: Path
    train_json: Path
    val_json: Path
    train_dir: Path
    val_dir: Path


# --------------------------------------------------------------------------- colours, backgrounds


def _colour(rng) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _pick_colour(rng, ref: np.ndarray, min_dist: float = 110.0) -> np.ndarray:
    """A random RGB colour at Euclidean distance >= ``min_dist`` from ``ref`` (3,)."""
    for _ in range(40):
        c = _colour(rng)
        if np.linalg.norm(c - ref) >= min_dist:
            return c
    return np.where(ref > 127, 20.0, 235.0).astype(np.float32)


def _ramp(rng, size: int, shape=None) -> np.ndarray:
    """(h, w) float32 in [0, 1] along a random direction."""
    h, w = shape or (size, size)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    return (t - t.min()) / max(float(t.max() - t.min()), 1e-6)


def _background(rng, size: int) -> np.ndarray:
    """(size, size, 3) float32 background: solid, gradient, smooth noise or soft stripes."""
    kind = rng.choice(["solid", "gradient", "noise", "stripes"], p=[0.25, 0.3, 0.25, 0.2])
    if kind == "solid":
        return np.broadcast_to(_colour(rng), (size, size, 3)).copy()
    if kind == "gradient":
        t = _ramp(rng, size)[..., None]
        return _colour(rng) * (1 - t) + _colour(rng) * t
    if kind == "noise":
        cells = int(rng.integers(3, 9))
        low = rng.uniform(40, 215, 3) + rng.uniform(-70, 70, (cells, cells, 3))
        return cv2.resize(low.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 255)
    period = rng.uniform(10, 40)
    wave = np.sin(2 * np.pi * _ramp(rng, size) * size / period)[..., None]
    base = rng.uniform(50, 205, 3).astype(np.float32)
    return (base + rng.uniform(15, 35) * wave).clip(0, 255)


def _fill(rng, ref: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 object texture contrasting with ``ref``: solid, stripes, gradient or speckle."""
    kind = rng.choice(["solid", "stripes", "gradient", "speckle"], p=[0.5, 0.2, 0.15, 0.15])
    c1 = _pick_colour(rng, ref)
    if kind == "solid":
        return np.broadcast_to(c1, (h, w, 3)).astype(np.float32)
    if kind == "speckle":
        return (c1 + rng.normal(0, 22, (h, w, 3))).clip(0, 255).astype(np.float32)
    c2 = _pick_colour(rng, ref)
    t = _ramp(rng, 0, (h, w))
    if kind == "stripes":
        t = (np.sin(2 * np.pi * t * max(h, w) / rng.uniform(4, 10)) > 0).astype(np.float32)
    t = t[..., None]
    return (c1 * (1 - t) + c2 * t).astype(np.float32)


# --------------------------------------------------------------------------- shapes


def _pt(x: float, y: float) -> tuple[int, int]:
    """Continuous pixel coordinates (pixel i spans [i, i+1]) -> cv2 fixed-point point."""
    return int(round((x - 0.5) * (1 << _SHIFT))), int(round((y - 0.5) * (1 << _SHIFT)))


def _ellipse(mask: np.ndarray, cx: float, cy: float, ax: float, ay: float, value: int) -> None:
    axes = (int(round(ax * (1 << _SHIFT))), int(round(ay * (1 << _SHIFT))))
    cv2.ellipse(mask, _pt(cx, cy), axes, 0, 0, 360, value, -1, cv2.LINE_AA, _SHIFT)


def _polygon(mask: np.ndarray, pts: list[tuple[float, float]]) -> None:
    poly = np.array([_pt(x, y) for x, y in pts], np.int32)
    cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, _SHIFT)


def _shape_mask(rng, label: int, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """(size, size) uint8 anti-aliased mask of class ``label`` filling ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    mask = np.zeros((size, size), np.uint8)
    cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    name = SYNTHETIC_CLASSES[label]
    if name in ("circle", "ring"):
        _ellipse(mask, cx, cy, ax, ay, 255)
        if name == "ring":
            hole = rng.uniform(0.45, 0.7)
            _ellipse(mask, cx, cy, ax * hole, ay * hole, 0)
    elif name in ("square", "bar"):
        _polygon(mask, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    else:
        tips = {0: [(x0, y1), (x1, y1), (cx, y0)], 1: [(x0, y0), (x1, y0), (cx, y1)],
                2: [(x1, y0), (x1, y1), (x0, cy)], 3: [(x0, y0), (x0, y1), (x1, cy)]}
        _polygon(mask, tips[int(rng.integers(4))])
    return mask


def _draw_size(rng, label: int, tiny: bool) -> tuple[float, float]:
    """(w, h) in pixels for class ``label``."""
    long_side = rng.uniform(8, 13) if tiny else float(np.exp(rng.uniform(np.log(22), np.log(120))))
    name = SYNTHETIC_CLASSES[label]
    if name == "bar":
        ratio = rng.uniform(0.3, 0.5)
    elif name == "triangle":
        ratio = rng.uniform(0.75, 1.0)
    else:
        ratio = rng.uniform(0.85, 1.0)
    short = long_side * ratio
    return (long_side, short) if rng.uniform() < 0.5 else (short, long_side)


def _box_iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class _Scene:
    """Objects placed so far: boxes, labels, full masks (bool), visible masks, tiny flags."""

    def __init__(self, size: int):
        self.size = size
        self.objects: list[dict] = []

    def try_add(self, rng, label: int, tiny: bool) -> dict | None:
        """Place one object of ``label`` at a random spot if the overlap rules allow it."""
        w, h = _draw_size(rng, label, tiny)
        fit = (self.size - 3) / max(w, h)  # sizes are absolute (up to 120 px): shrink to fit small images
        if fit < 1:                          # (never for 128 px and up, so those data sets are unchanged)
            w, h = w * fit, h * fit
        x0 = rng.uniform(1, self.size - 1 - w)
        y0 = rng.uniform(1, self.size - 1 - h)
        geo = (x0, y0, x0 + w, y0 + h)
        for obj in self.objects:
            iou = _box_iou(geo, obj["geo"])
            if iou > _MAX_IOU or ((tiny or obj["tiny"]) and _box_iou(_grow(geo, 2), obj["geo"]) > 0):
                return None
        mask = _shape_mask(rng, label, geo, self.size)
        solid = mask >= 128
        if not solid.any():
            return None
        for obj in self.objects:
            if (obj["visible"] & ~solid).sum() < _MIN_VISIBLE * obj["area"]:
                return None
        for obj in self.objects:
            obj["visible"] &= ~solid
        obj = dict(label=label, geo=geo, tiny=tiny, mask=mask, visible=solid.copy(), area=int(solid.sum()))
        self.objects.append(obj)
        return obj


def _grow(box, d: float):
    return (box[0] - d, box[1] - d, box[2] + d, box[3] + d)


def _mask_box(mask: np.ndarray) -> list[float]:
    """Tight [x0, y0, x1, y1] (exclusive ends) of the pixels with coverage >= 50 %."""
    ys, xs = np.nonzero(mask >= 128)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def generate_synthetic_image(seed: int, split: str, index: int, image_size: int = 256):
    """Render image ``index`` of ``split`` ("train" or "val") for ``seed``.

    Returns ``(image uint8 (S, S, 3) RGB, boxes float32 (G, 4) xyxy, labels int64 (G,))``."""
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    size = image_size
    image = _background(rng, size)
    scene = _Scene(size)
    wanted = int(rng.integers(1, 7))
    for _ in range(wanted):
        label = int(rng.integers(len(SYNTHETIC_CLASSES)))
        tiny = rng.uniform() < _TINY_PROB
        if tiny and SYNTHETIC_CLASSES[label] in ("ring", "bar"):
            label = int(rng.choice([0, 1, 2]))
        for _attempt in range(30):
            obj = scene.try_add(rng, label, tiny)
            if obj is not None:
                image = _composite(rng, image, obj["mask"])
                break
    image = image + rng.normal(0, rng.uniform(1, 4), image.shape)
    if rng.uniform() < 0.3:
        image = cv2.GaussianBlur(image.astype(np.float32), (3, 3), 0.6)
    boxes = np.array([_mask_box(o["mask"]) for o in scene.objects], np.float32).reshape(-1, 4)
    labels = np.array([o["label"] for o in scene.objects], np.int64)
    return image.clip(0, 255).round().astype(np.uint8), boxes, labels


def _composite(rng, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint a textured object through the anti-aliased ``mask`` onto float32 ``image``."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    region = image[y0:y1, x0:x1]
    alpha = (mask[y0:y1, x0:x1].astype(np.float32) / 255.0)[..., None]
    ref = (region * alpha).sum(axis=(0, 1)) / max(float(alpha.sum()), 1e-6)
    tex = _fill(rng, ref, y1 - y0, x1 - x0)
    image = image.copy()
    image[y0:y1, x0:x1] = region * (1 - alpha) + tex * alpha
    return image


# --------------------------------------------------------------------------- on disk


def default_synthetic_root(seed: int = 0, image_size: int = 256, num_train: int = 240, num_val: int = 60) -> Path:
    """``$DETSCOPE_CACHE`` (else ``~/.cache/detscope``) ``/synthetic-v1-seed{seed}-{image_size}``;
    non-default image counts add ``-{num_train}x{num_val}`` so they never overwrite the default."""
    base = Path(os.environ["DETSCOPE_CACHE"]) if os.environ.get("DETSCOPE_CACHE") else \
        Path.home() / ".cache" / "detscope"
    name = f"synthetic-v{GENERATOR_VERSION}-seed{seed}-{image_size}"
    if (num_train, num_val) != (240, 60):
        name += f"-{num_train}x{num_val}"
    return base / name


def _paths(root: Path) -> SyntheticPaths:
    return SyntheticPaths(root=root, train_json=root / "annotations" / "train.json",
                          val_json=root / "annotations" / "val.json", train_dir=root / "train",
                          val_dir=root / "val")


def _file_name(split: str, index: int) -> str:
    return f"{index + 1:06d}{_EXT[split]}"


def _manifest(seed: int, counts: dict, image_size: int) -> dict:
    return {"generator": "detscope-synthetic", "version": GENERATOR_VERSION, "seed": seed,
            "image_size": image_size, "num_train": counts["train"], "num_val": counts["val"],
            "classes": SYNTHETIC_CLASSES, "file_count": counts["train"] + counts["val"] + 2}


def _is_complete(paths: SyntheticPaths, expected: dict, counts: dict) -> bool:
    """The manifest matches ``expected`` and every file it promises exists."""
    try:
        manifest = json.loads((paths.root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest != expected or not (paths.train_json.is_file() and paths.val_json.is_file()):
        return False
    dirs = {"train": paths.train_dir, "val": paths.val_dir}
    return all((dirs[s] / _file_name(s, i)).is_file() for s in _SPLITS for i in range(counts[s]))


def _clear(paths: SyntheticPaths) -> None:
    """Remove a previous (partial) generation; refuse to touch folders the generator did not make."""
    (paths.root / _MANIFEST).unlink(missing_ok=True)
    marker = (paths.root / _MARKER).exists()
    for d in (paths.train_dir, paths.val_dir, paths.root / "annotations"):
        if d.exists() and any(d.iterdir()):
            if not marker:
                raise DatasetError(f"{d} already holds files not made by the synthetic generator; "
                                   "choose an empty or new root", path=d)
            shutil.rmtree(d)


def _write_split(paths: SyntheticPaths, split: str, seed: int, count: int, image_size: int,
                 on_image: Callable[[], None] | None = None) -> None:
    folder = paths.train_dir if split == "train" else paths.val_dir
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(count):
        image, boxes, labels = generate_synthetic_image(seed, split, i, image_size)
        name = _file_name(split, i)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if split == "train" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
        ok, buf = cv2.imencode(_EXT[split], cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise DatasetError(f"cannot encode synthetic image {folder / name}", path=folder / name)
        buf.tofile(folder / name)
        images.append({"id": i + 1, "file_name": name, "width": image_size, "height": image_size})
        for box, label in zip(boxes.tolist(), labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"image_id": i + 1, "category_id": label + 1, "bbox": [box[0], box[1], w, h],
                         "area": w * h, "iscrowd": 0})
        if on_image is not None:
            on_image()
    cats = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SYNTHETIC_CLASSES)]
    out = paths.train_json if split == "train" else paths.val_json
    write_coco(out, images, anns, cats, info={"description": f"DetScope synthetic shapes v{GENERATOR_VERSION}, "
                                                             f"seed {seed}, {split}"})


@contextlib.contextmanager
def _locked(root: Path):
    """Hold an exclusive lock on ``root/.lock`` (POSIX) so two processes do not generate at once."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_synthetic_dataset(root=None, *, seed: int = 0, num_train: int = 240, num_val: int = 60,
                             image_size: int = 256, progress: Callable[[int, int], None] | None = None) -> SyntheticPaths:
    """Return the synthetic dataset's paths, generating it first if ``root`` does not already
    hold a complete generation with these parameters (see the module docstring).
    ``progress(done, total)`` is called after each generated image (not at all when it exists)."""
    if image_size < 64 or num_train < 0 or num_val < 0:
        raise ValueError(f"synthetic dataset needs image_size >= 64 and counts >= 0, got "
                         f"image_size={image_size}, num_train={num_train}, num_val={num_val}")
    root = Path(root).expanduser() if root is not None else default_synthetic_root(seed, image_size, num_train,
                                                                                     num_val)
    paths = _paths(root.absolute())
    counts = {"train": num_train, "val": num_val}
    expected = _manifest(seed, counts, image_size)
    with _locked(paths.root):
        if _is_complete(paths, expected, counts):
            return paths
        _clear(paths)
        (paths.root / _MARKER).write_text("made by detengine.data.synthetic\n", encoding="utf-8")
        made = itertools.count(1)
        on_image = None if progress is None else (lambda: progress(next(made), num_train + num_val))
        for split in _SPLITS:
            _write_split(paths, split, seed, counts[split], image_size, on_image)
        atomic_write_text(paths.root / _MANIFEST, json.dumps(expected, indent=1))
    return paths
