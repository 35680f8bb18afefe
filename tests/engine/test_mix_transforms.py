"""RTMDet's training transforms (CachedMosaic, CachedMixUp, RandomCrop, YOLOXHSVRandomAug):
exact against mmdetection 3.3.0 with its random draws replayed, consistent boxes, and the
deterministic caches of SeededTrainSet (same sample in order, out of order, after a resume)."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from detengine.config import load_config
from detengine.data import (
    CachedMixUp,
    CachedMosaic,
    CocoDataset,
    DetectionSample,
    RandomCrop,
    YOLOXHSVRandomAug,
    build_pipeline,
    ensure_synthetic_dataset,
    sample_to_results,
)
from detengine.data.errors import DatasetError
from detengine.data.transform_base import map_boxes
from detengine.train import distributed
from detengine.train.data import HANDLED_HOOKS, EpochOrder, SeededTrainSet, build_data, pipelines_for, train_stages_for
from tests.floats import assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_mix_reference.pt"
CONFIG = Path(__file__).parents[2] / "resources" / "configs" / "rtmdet_tiny_coco.py"
CLASSES = {"CachedMosaic": CachedMosaic, "CachedMixUp": CachedMixUp, "RandomCrop": RandomCrop,
           "YOLOXHSVRandomAug": YOLOXHSVRandomAug}


# --------------------------------------------------------------------------- mmdetection replay


class ReplayGenerator:
    """Stands in for a numpy Generator: returns mmdetection's recorded draws in order, checking
    that each call asks for the same kind of draw with the same bounds."""

    def __init__(self, draws):
        self.draws = list(draws)

    def _next(self, kind, low, high, size):
        assert self.draws, f"one draw too many: {kind}({low}, {high})"
        rec_kind, rec_low, rec_high, value = self.draws.pop(0)
        assert (rec_kind, rec_low, rec_high) == (kind, float(low), float(high))
        assert np.shape(value) == (() if size is None else (size,))
        return value

    def integers(self, low, high=None, size=None):
        value = self._next("integers", low, high, size)
        return int(value) if size is None else np.asarray(value, np.int64)

    def uniform(self, low=0.0, high=1.0, size=None):
        value = self._next("uniform", low, high, size)
        return float(value) if size is None else np.asarray(value, np.float64)

    def random(self, size=None):
        value = self._next("random", 0.0, 1.0, size)
        return float(value) if size is None else np.asarray(value, np.float64)


def _ours(inp: dict) -> dict:
    """A stored input (boxes with ignore flags, as mmdetection) as our results dict."""
    ignore = inp["ignore"].numpy()
    boxes, labels = inp["boxes"].numpy(), inp["labels"].numpy()
    image = inp["image"].numpy().copy()
    return sample_to_results(DetectionSample(image=image, boxes=boxes[~ignore], labels=labels[~ignore],
                                             ignore_boxes=boxes[ignore], image_id=7, ori_shape=image.shape[:2]))


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE, weights_only=True)


CASES = [(name, case) for name, cases in (("CachedMosaic", ("random_pop", "fifo_no_clip")),
                                          ("CachedMixUp", ("random_pop", "fifo_no_clip")),
                                          ("RandomCrop", ("absolute", "absolute_big", "absolute_range", "relative",
                                                          "relative_range", "no_clip", "negative",
                                                          "negative_allowed")),
                                          ("YOLOXHSVRandomAug", ("default", "big")))
         for case in cases]


@pytest.mark.parametrize("name,case", CASES)
def test_matches_mmdetection(reference, name, case):
    """Same draws -> identical image and labels, boxes within a few ULP, call after call (the
    standalone caches pop and fill as mmdetection's)."""
    ref = reference[name][case]
    transform = CLASSES[name](**ref["args"])
    for i, (inp, call) in enumerate(zip(ref["inputs"], ref["calls"], strict=True)):
        transform.rng = ReplayGenerator(call["draws"])
        out = transform(_ours(inp))
        assert not transform.rng.draws, f"call {i}: mmdetection drew more: {transform.rng.draws}"
        expected = call["output"]
        if expected is None:
            assert out is None, f"call {i}"
            continue
        ignore = expected["ignore"].numpy()
        np.testing.assert_array_equal(out["image"], expected["image"].numpy(), err_msg=f"call {i}")
        assert out["image"].dtype == np.uint8
        boxes = expected["boxes"].numpy()
        assert_ulp_close(torch.from_numpy(out["boxes"]), torch.from_numpy(boxes[~ignore]), what=f"call {i}")
        np.testing.assert_array_equal(out["labels"], expected["labels"].numpy()[~ignore])
        assert_ulp_close(torch.from_numpy(out["ignore_boxes"]), torch.from_numpy(boxes[ignore]), what=f"call {i}")


def test_fixture_exercises_every_branch(reference):
    """The replayed calls include skipped, applied, refused and unchanged-by-empty outcomes."""
    mosaic = reference["CachedMosaic"]["random_pop"]["calls"]
    assert {c["output"]["image"].shape[:2] for c in mosaic} >= {(40, 48)}  # applied: 2 x (24, 20)
    assert any(c["output"]["image"].shape[:2] != (40, 48) and c["draws"] for c in mosaic)  # prob said no
    mixup = reference["CachedMixUp"]["random_pop"]["calls"]
    assert len(mixup[1]["draws"]) == 16  # 15 draws of an entry without boxes: unchanged
    assert [c["output"] for c in reference["RandomCrop"]["negative"]["calls"]] == [None, None]


# --------------------------------------------------------------------------- box consistency


def _scene(rng, h, w, n, sample_id, n_ignore=0):
    def box():
        x1, y1 = rng.uniform(0, w - 8), rng.uniform(0, h - 8)
        return [x1, y1, rng.uniform(x1 + 4, w), rng.uniform(y1 + 4, h)]
    boxes = np.array([box() for _ in range(n)], np.float32).reshape(-1, 4)
    ignore = np.array([box() for _ in range(n_ignore)], np.float32).reshape(-1, 4)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return DetectionSample(image=image, boxes=boxes, labels=100 * sample_id + np.arange(n, dtype=np.int64),
                           ignore_boxes=ignore, image_id=sample_id, ori_shape=(h, w))


def _check_consistent(out, samples, clipped=True):
    """Boxes inside the image, one label per box, the own boxes where the homography puts them,
    the mixed-in ones carrying labels of the samples they came from."""
    h, w = out["image"].shape[:2]
    assert out["image"].dtype == np.uint8
    assert len(out["boxes"]) == len(out["labels"]) == len(out["meta"]["box_ids"])
    assert len(out["ignore_boxes"]) == len(out["meta"]["ignore_ids"])
    for key in ("boxes", "ignore_boxes"):
        b = out[key]
        if clipped:
            assert (b[:, 0::2] >= 0).all() and (b[:, 0::2] <= w).all()
            assert (b[:, 1::2] >= 0).all() and (b[:, 1::2] <= h).all()
        assert ((b[:, 0] < w) & (b[:, 1] < h) & (b[:, 2] > 0) & (b[:, 3] > 0)).all()
    own = samples[out["meta"]["image_id"]]
    mapped = map_boxes(own.boxes, out["meta"]["homography"])
    mapped[:, 0::2], mapped[:, 1::2] = mapped[:, 0::2].clip(0, w), mapped[:, 1::2].clip(0, h)
    for row, k in enumerate(out["meta"]["box_ids"]):
        if k >= 0:
            assert out["labels"][row] == own.labels[k]
            np.testing.assert_allclose(out["boxes"][row], mapped[k], atol=1e-3)
        else:
            sources = {m for entry in out["meta"]["mixed"] for m in entry["image_ids"]}
            assert out["labels"][row] // 100 in sources


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_and_mixup_keep_boxes_consistent(seed):
    rng = np.random.default_rng(seed)
    samples = {i: _scene(rng, int(rng.integers(20, 90)), int(rng.integers(20, 90)), int(rng.integers(0, 5)), i,
                         n_ignore=i % 2) for i in range(10)}
    mosaic = CachedMosaic(img_scale=(48, 40), max_cached_images=5, random_pop=bool(seed % 2), rng=seed)
    mixup = CachedMixUp(img_scale=(48, 40), max_cached_images=3, ratio_range=(0.5, 1.5), rng=seed)
    for i, sample in samples.items():
        out = mosaic(sample_to_results(copy.deepcopy(sample)))
        _check_consistent(out, samples)
        _check_consistent(mixup(out), samples)
    assert sum(1 for _ in samples) == 10 and len(mosaic._cache) == 5 and len(mixup._cache) == 3


def test_empty_annotations():
    rng = np.random.default_rng(0)
    samples = {i: _scene(rng, 30, 40, 0, i) for i in range(6)}
    mosaic, mixup = CachedMosaic(img_scale=(24, 20), rng=0), CachedMixUp(img_scale=(24, 20), rng=0)
    for i, sample in samples.items():
        results = sample_to_results(sample)
        out = mosaic(results)
        assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)
        assert out["image"].shape == ((40, 48, 3) if i >= 4 else (30, 40, 3))
        image = out["image"].copy()
        assert mixup(out)["image"] is not None and np.array_equal(out["image"], image)  # nothing to mix in
    assert RandomCrop(crop_size=(10, 10), rng=0)(sample_to_results(samples[0])) is None
    out = RandomCrop(crop_size=(10, 10), allow_negative_crop=True, rng=0)(sample_to_results(samples[0]))
    assert out["image"].shape == (10, 10, 3) and out["boxes"].shape == (0, 4)
    out = YOLOXHSVRandomAug(rng=0)(sample_to_results(samples[1]))
    assert out["image"].dtype == np.uint8 and out["image"].shape == (30, 40, 3)


def test_random_crop_bookkeeping():
    sample = DetectionSample(image=np.zeros((40, 50, 3), np.uint8),
                             boxes=np.array([[0, 0, 10, 10], [30, 20, 50, 40], [5, 30, 15, 38]], np.float32),
                             labels=np.array([0, 1, 2]), image_id=1, ori_shape=(40, 50))
    crop = RandomCrop(crop_size=(25, 20), rng=0)
    crop.rng = ReplayGenerator([("integers", 0.0, 21.0, 12), ("integers", 0.0, 26.0, 20)])  # top 12, left 20
    out = crop(sample_to_results(sample))
    assert out["meta"]["img_shape"] == (20, 25) and out["meta"]["crop_patch"] == (20, 12, 45, 32)
    np.testing.assert_array_equal(out["boxes"], [[10, 8, 25, 20]])
    assert out["meta"]["box_ids"].tolist() == [1]
    assert out["meta"]["dropped"] == [{"transform": "RandomCrop", "boxes": [0, 2], "ignore_boxes": []}]
    np.testing.assert_allclose(map_boxes(sample.boxes[1:2], out["meta"]["homography"]), [[10, 8, 30, 28]])


def test_hsv_does_not_write_its_input():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    results = sample_to_results(DetectionSample(image=image, ori_shape=(8, 8)))
    before = image.copy()
    t = YOLOXHSVRandomAug(rng=0)
    t.rng = ReplayGenerator([("uniform", -1.0, 1.0, [0.5, 0.5, 0.5]), ("integers", 0.0, 2.0, [1, 1, 1])])
    assert not np.array_equal(t(results)["image"], before)
    np.testing.assert_array_equal(image, before)


# --------------------------------------------------------------------------- deterministic caches


class MemoryDataset:
    """In-memory samples (``empty``: indices without boxes); counts loads."""

    class_names = ["a", "b", "c"]

    def __init__(self, n, seed=0, empty=()):
        rng = np.random.default_rng(seed)
        self.samples = [_scene(rng, int(rng.integers(40, 80)), int(rng.integers(40, 80)),
                               0 if i in empty else int(rng.integers(1, 4)), i) for i in range(n)]
        self.loads = 0

    def __len__(self):
        return len(self.samples)

    def load_sample(self, index):
        self.loads += 1
        return copy.deepcopy(self.samples[index])


SMALL_RTMDET = [
    dict(type="CachedMosaic", img_scale=(48, 48), pad_val=114.0, max_cached_images=6, random_pop=False),
    dict(type="RandomResize", scale=(96, 96), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=(48, 48)),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="Pad", size=(48, 48), pad_val=dict(img=(114, 114, 114))),
    dict(type="CachedMixUp", img_scale=(48, 48), ratio_range=(1.0, 1.0), max_cached_images=4, random_pop=False,
         pad_val=(114, 114, 114), prob=0.5),
]


def _train_set(dataset, cfg=SMALL_RTMDET, order=None, seed=3):
    train_set = SeededTrainSet(dataset, build_pipeline(cfg), seed)
    if order is not None:
        train_set.set_order(order)
    return train_set


def _same(a, b):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    np.testing.assert_array_equal(a["labels"], b["labels"])
    assert a["meta"].get("mixed") == b["meta"].get("mixed")


def _in_order(train_set, epochs):
    out = {}
    for epoch in epochs:
        train_set.set_epoch(epoch)
        for index in train_set._order(epoch)[0]:
            out[epoch, index] = train_set[index]
    return out


def test_same_sample_in_order_out_of_order_and_without_memos():
    dataset, order = MemoryDataset(9, empty=(4,)), EpochOrder(3, 9)
    reference = _in_order(_train_set(dataset, order=order), (0, 1))
    assert any(s["meta"].get("mixed") and len(s["meta"]["mixed"]) == 2 for s in reference.values())
    resumed = _train_set(dataset, order=order)  # as after a resume: epoch 1, backwards
    resumed.set_epoch(1)
    for index in reversed(order(1)):
        _same(resumed[index], reference[1, index])
    cold = _train_set(dataset, order=order)
    cold.set_epoch(1)
    for index in order(1)[:4]:
        cold._reset_memos()
        _same(cold[index], reference[1, index])
    worker = pickle.loads(pickle.dumps(resumed))  # a DataLoader worker's copy: empty memos
    assert not worker._prefix_memo.items and not worker._raw_memo.items
    _same(worker[order(1)[5]], reference[1, order(1)[5]])


def test_sequential_access_loads_each_image_once():
    dataset = MemoryDataset(8)
    _in_order(_train_set(dataset, order=EpochOrder(0, 8)), (0,))
    assert dataset.loads == 8


def test_window_is_mmdetections_fifo_cache():
    """random_pop=False, one process, no refetch: exactly a standalone pipeline whose transforms
    keep mmdetection's own list caches, run over the same timeline with the same seeds."""
    cfg = [step for step in SMALL_RTMDET if step["type"] not in ("RandomCrop", "Pad")]
    dataset = MemoryDataset(7)
    ours = _in_order(_train_set(dataset, cfg), (0, 1))
    standalone = build_pipeline(cfg)
    for epoch in (0, 1):
        for index in range(7):
            standalone.set_rng(np.random.default_rng([3, epoch, index]))
            _same(standalone(sample_to_results(dataset.load_sample(index))), ours[epoch, index])


def test_first_samples_skip_the_mosaic_as_the_filling_cache():
    dataset = MemoryDataset(12)
    train_set = _train_set(dataset, [dict(type="CachedMosaic", img_scale=(32, 32), max_cached_images=10)],
                           order=EpochOrder(0, 12))
    out = _in_order(train_set, (0, 1))
    shapes = [out[0, i]["image"].shape[:2] for i in EpochOrder(0, 12)(0)]
    assert [s == (64, 64) for s in shapes] == [False] * 4 + [True] * 8
    assert all(out[1, i]["image"].shape[:2] == (64, 64) for i in range(12))  # window continues across epochs


def test_refetch_is_deterministic_and_bounded():
    dataset = MemoryDataset(6, empty=(0, 1, 2))
    crop = [dict(type="RandomCrop", crop_size=(30, 30))]
    first, again = _train_set(dataset, crop)[0], _train_set(dataset, crop)[0]
    _same(first, again)
    assert first["meta"]["image_id"] in (3, 4, 5) and len(first["boxes"])
    with pytest.raises(DatasetError, match="RandomCrop"):
        _train_set(MemoryDataset(3, empty=(0, 1, 2)), crop)[1]


def test_epoch_order_matches_the_trainers_shuffle_and_shard(monkeypatch):
    g = torch.Generator().manual_seed(5 * 100_003 + 2)
    assert EpochOrder(5, 11)(2) == torch.randperm(11, generator=g).tolist()
    for rank in range(3):
        monkeypatch.setattr(distributed, "world_size", lambda: 3)
        monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
        assert EpochOrder(5, 11, 3, rank)(2) == distributed.shard(EpochOrder(5, 11)(2))
    pickle.loads(pickle.dumps(EpochOrder(5, 11, 3, 1)))


def test_an_index_repeated_in_an_order_gives_the_same_sample():
    """(``shard`` pads by repetition; the first position of an index is its position.)"""
    positions = [3, 0, 5, 1, 2, 6, 3, 4]
    train_set = _train_set(MemoryDataset(7), order=lambda epoch: positions)
    outs = [train_set[i] for i in positions]
    _same(outs[0], outs[6])
    assert train_set._window_keys(0, 4, 4) == [(0, 2), (0, 6), (0, 3)]


# --------------------------------------------------------------------------- the shipped config


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    paths = ensure_synthetic_dataset(root, num_train=8, num_val=1, image_size=128)
    return root, CocoDataset(paths.train_json, paths.train_dir)


def test_rtmdet_tiny_config_pipelines_and_switch(synthetic):
    cfg = load_config(CONFIG)
    assert [h["type"] for h in cfg["custom_hooks"]] == ["EMAHook", "PipelineSwitchHook"]
    assert HANDLED_HOOKS == ("PipelineSwitchHook",)
    train, _ = pipelines_for(cfg)
    stages = train_stages_for(cfg)
    assert [e for e, _ in stages] == [280]
    train_set = SeededTrainSet(synthetic[1], train, 0, stages=stages)
    train_set.set_order(EpochOrder(0, len(synthetic[1])))
    for epoch, mixed in ((0, True), (279, True), (280, False)):
        train_set.set_epoch(epoch)
        assert any(isinstance(t, CachedMosaic) for t in train_set.pipeline.transforms) == mixed
        for index in train_set._order(epoch)[0][-2:] if epoch else train_set._order(0)[0][:6]:
            out = train_set[index]
            assert out["image"].shape == (3, 640, 640) and out["image"].dtype == torch.float32
            boxes = out["boxes"]
            assert len(boxes) == len(out["labels"]) > 0
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 640).all()
            assert bool(out["meta"].get("mixed")) <= mixed


def test_build_data_reads_the_switch_hook(synthetic):
    cfg = load_config(CONFIG).to_dict() if hasattr(load_config(CONFIG), "to_dict") else dict(load_config(CONFIG))
    cfg["data"] = dict(default="synthetic", synthetic=dict(root=synthetic[0], num_train=8, num_val=1,
                                                           image_size=128))
    bundle = build_data(cfg)
    assert [e for e, _ in bundle.train.stages] == [0, 280]
    bad = dict(cfg, custom_hooks=[dict(type="PipelineSwitchHook", switch_epoch=3)])
    with pytest.raises(ValueError, match="PipelineSwitchHook"):
        train_stages_for(bad)
    bad = dict(cfg, custom_hooks=[dict(type="PipelineSwitchHook", switch_epoch=3,
                                       switch_pipeline=[dict(type="Mosaic")])])
    with pytest.raises(ValueError, match="custom_hooks\\[0\\].*Mosaic"):
        train_stages_for(bad)
