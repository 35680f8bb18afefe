"""The built-in synthetic dataset: deterministic, cached, well-formed."""
from __future__ import annotations

import json

import numpy as np
import pytest

import detengine.data.synthetic as synthetic
from detengine.data import (
    SYNTHETIC_CLASSES,
    CocoDataset,
    DatasetError,
    default_synthetic_root,
    ensure_synthetic_dataset,
    generate_synthetic_image,
    load_coco_checked,
)

SMALL = dict(seed=3, num_train=10, num_val=4, image_size=128)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return ensure_synthetic_dataset(tmp_path_factory.mktemp("syn") / "a", **SMALL)


def _files(paths):
    return {p.relative_to(paths.root).as_posix(): p.read_bytes()
            for p in sorted(paths.root.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_counts_classes_and_boxes_inside(small):
    for json_path, img_dir, count in ((small.train_json, small.train_dir, 10), (small.val_json, small.val_dir, 4)):
        data = load_coco_checked(json_path)
        assert len(data["images"]) == count
        assert [c["name"] for c in data["categories"]] == SYNTHETIC_CLASSES == [
            "circle", "square", "triangle", "ring", "bar"]
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
        ds = CocoDataset(json_path, img_dir)
        assert len(ds) == count and ds.num_classes == 5
        for i in range(len(ds)):
            s = ds[i]
            assert s.image.shape == (128, 128, 3)
            assert 1 <= len(s.boxes) <= 6 and s.ignore_boxes.shape == (0, 4)
            assert np.all(s.boxes[:, :2] >= 0) and np.all(s.boxes[:, 2:] <= 128)
            assert np.all(s.boxes[:, 2:] > s.boxes[:, :2])
            assert set(s.labels.tolist()) <= set(range(5))
    assert sorted(p.suffix for p in small.train_dir.iterdir()) == [".jpg"] * 10
    assert sorted(p.suffix for p in small.val_dir.iterdir()) == [".png"] * 4


def test_same_seed_same_bytes_other_seed_differs(small, tmp_path):
    again = ensure_synthetic_dataset(tmp_path / "b", **SMALL)
    assert _files(again) == _files(small)
    other = ensure_synthetic_dataset(tmp_path / "c", **{**SMALL, "seed": 4, "num_train": 2, "num_val": 1})
    assert other.train_json.read_bytes() != small.train_json.read_bytes()
    a, b = generate_synthetic_image(3, "train", 0, 128), generate_synthetic_image(3, "train", 0, 128)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], generate_synthetic_image(3, "val", 0, 128)[0])


def test_second_call_reuses(small, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in small.root.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a complete dataset")

    monkeypatch.setattr(synthetic, "_write_split", fail)
    assert ensure_synthetic_dataset(small.root, **SMALL) == small
    assert {p: p.stat().st_mtime_ns for p in small.root.rglob("*") if p.is_file()} == before


def test_incomplete_or_changed_generation_is_redone(tmp_path):
    paths = ensure_synthetic_dataset(tmp_path / "d", **{**SMALL, "num_train": 3, "num_val": 2})
    reference = _files(paths)
    (paths.train_dir / "000002.jpg").unlink()
    assert _files(ensure_synthetic_dataset(paths.root, **{**SMALL, "num_train": 3, "num_val": 2})) == reference
    (paths.root / "manifest.json").unlink()  # as if killed before the manifest was written
    (paths.val_dir / "000001.png").write_bytes(b"half")
    assert _files(ensure_synthetic_dataset(paths.root, **{**SMALL, "num_train": 3, "num_val": 2})) == reference
    bigger = ensure_synthetic_dataset(paths.root, **{**SMALL, "num_train": 4, "num_val": 1})
    manifest = json.loads((bigger.root / "manifest.json").read_text())
    assert manifest["num_train"] == 4 and len(list(bigger.val_dir.iterdir())) == 1


def test_killed_generation_leaves_no_manifest(tmp_path, monkeypatch):
    calls = []

    def die(paths, split, *args):
        calls.append(split)
        if split == "val":
            raise KeyboardInterrupt
        return original(paths, split, *args)

    original = synthetic._write_split
    monkeypatch.setattr(synthetic, "_write_split", die)
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic_dataset(tmp_path / "e", **{**SMALL, "num_train": 2, "num_val": 1})
    assert not (tmp_path / "e" / "manifest.json").exists() and calls == ["train", "val"]


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mine.txt").write_text("user data")
    with pytest.raises(DatasetError, match="not made by the synthetic generator"):
        ensure_synthetic_dataset(tmp_path, **{**SMALL, "num_train": 1, "num_val": 1})
    assert (tmp_path / "train" / "mine.txt").exists()


def test_default_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DETSCOPE_CACHE", str(tmp_path))
    assert default_synthetic_root(0, 256) == tmp_path / "synthetic-v1-seed0-256"
    assert default_synthetic_root(1, 128, 10, 4) == tmp_path / "synthetic-v1-seed1-128-10x4"
    monkeypatch.delenv("DETSCOPE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_synthetic_root(0, 256) == tmp_path / "home" / ".cache" / "detscope" / "synthetic-v1-seed0-256"


def test_content_statistics():
    """Sizes and shapes as documented: mostly 22-120 px, a few tiny, 1-6 objects, all classes."""
    longs, labels, counts = [], [], []
    for i in range(60):
        _, boxes, labs = generate_synthetic_image(0, "train", i, 256)
        longs += np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).tolist()
        labels += labs.tolist()
        counts.append(len(boxes))
        for box, lab in zip(boxes, labs, strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            if SYNTHETIC_CLASSES[lab] == "bar" and max(w, h) > 15:
                assert max(w, h) / min(w, h) >= 1.6  # 2.0 drawn, plus the anti-aliased fringe
            if SYNTHETIC_CLASSES[lab] in ("square", "circle", "ring") and max(w, h) > 20:
                assert max(w, h) / min(w, h) <= 1.3
    longs = np.array(longs)
    assert min(counts) >= 1 and max(counts) <= 6
    assert set(labels) == set(range(5))
    assert 0.0 < np.mean(longs < 16) < 0.2 and np.mean(longs >= 22) > 0.8
    assert longs.max() <= 125


@pytest.mark.parametrize("size", [64, 96])
def test_small_images_shrink_objects_to_fit(size):
    for index in range(30):
        image, boxes, labels = generate_synthetic_image(5, "train", index, size)
        assert image.shape == (size, size, 3) and len(boxes) == len(labels) >= 1
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= size)
