"""Transforms: boxes stay inside the image and match a drawn mask; mmdetection rules; inverses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detengine.boxes import box_iou
from detengine.data import (
    Compose,
    DetectionSample,
    Expand,
    KeepRatioResize,
    MinIoURandomCrop,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomFlip,
    RandomResize,
    Resize,
    ToTensor,
    boxes_to_original,
    build_pipeline,
    flip,
    rescale_size,
    sample_to_results,
)

SETTINGS = settings(max_examples=30, deadline=None)
MEAN = (123.675, 116.28, 103.53)


@st.composite
def scenes(draw, max_boxes=4):
    """(h, w, boxes (G, 4) integer-valued float32, labels, ignore boxes (I, 4))."""
    h = draw(st.integers(24, 90))
    w = draw(st.integers(24, 90))

    def box():
        x1 = draw(st.integers(0, w - 6))
        y1 = draw(st.integers(0, h - 6))
        return [x1, y1, draw(st.integers(x1 + 6, w)), draw(st.integers(y1 + 6, h))]

    g = draw(st.integers(1, max_boxes))
    boxes = np.array([box() for _ in range(g)], np.float32)
    ignore = np.array([box() for _ in range(draw(st.integers(0, 2)))], np.float32).reshape(-1, 4)
    return h, w, boxes, np.arange(g, dtype=np.int64), ignore


def _results(h, w, boxes, labels, ignore, image=None):
    image = np.zeros((h, w, 3), np.uint8) if image is None else image
    return sample_to_results(DetectionSample(image=image, boxes=boxes.copy(), labels=labels.copy(),
                                             ignore_boxes=ignore.copy(), image_id=1, ori_shape=(h, w)))


def _mask_image(h, w, box):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    img[y1:y2, x1:x2] = 255
    return img


def _mask_extent(image):
    ys, xs = np.nonzero(np.asarray(image)[..., 0] > 127)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _assert_inside(out):
    assert out["meta"]["pad_shape"] == out["image"].shape[:2]
    h, w = out["meta"]["img_shape"]
    for key in ("boxes", "ignore_boxes"):
        b = np.asarray(out[key])
        assert b.dtype == np.float32 and b.shape[1] == 4
        assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0) and np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    assert len(out["boxes"]) == len(out["labels"]) == len(out["meta"]["box_ids"])
    assert len(out["ignore_boxes"]) == len(out["meta"]["ignore_ids"])


GEOMETRIC = {
    "expand": lambda seed: Expand(mean=(0, 0, 0), ratio_range=(1, 3), prob=1.0, rng=seed),
    "min_iou_crop": lambda seed: MinIoURandomCrop(rng=seed),
    "resize": lambda seed: Resize(scale=(int(37 + seed % 60), int(29 + seed % 71))),
    "keep_ratio_resize": lambda seed: KeepRatioResize(scale=(100 + seed % 50, 70)),
    "random_resize": lambda seed: RandomResize(scale=(80, 60), ratio_range=(0.8, 1.6), rng=seed),
    "flip_h": lambda seed: RandomFlip(prob=1.0, rng=seed),
    "flip_any": lambda seed: RandomFlip(prob=0.9, direction=["horizontal", "vertical", "diagonal"], rng=seed),
    "pad": lambda seed: Pad(size_divisor=32),
    "ssd_chain": lambda seed: Compose([Expand(mean=(0, 0, 0), prob=1.0), MinIoURandomCrop(),
                                       Resize(scale=(90, 90)), RandomFlip(prob=0.5)], rng=seed),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
@SETTINGS
@given(scene=scenes(), seed=st.integers(0, 2 ** 16))
def test_geometric_transform_matches_drawn_mask(name, scene, seed):
    """Draw each box as a filled rectangle, run the same (seeded) transform on image and boxes:
    every kept box equals the extent of its transformed mask (1.5 px for bilinear resizes)."""
    h, w, boxes, labels, ignore = scene
    out = GEOMETRIC[name](seed)(_results(h, w, boxes, labels, ignore))
    _assert_inside(out)
    tol = 1.5 if "resize" in name or name == "ssd_chain" else 1e-4
    content_h, content_w = out["meta"]["img_shape"]
    for row, k in enumerate(out["meta"]["box_ids"]):
        replay = GEOMETRIC[name](seed)(_results(h, w, boxes, labels, ignore, _mask_image(h, w, boxes[k])))
        extent = _mask_extent(replay["image"][:content_h, :content_w])
        assert extent is not None
        np.testing.assert_allclose(out["boxes"][row], extent, atol=tol)
    dropped = [i for d in out["meta"]["dropped"] for i in d["boxes"]]
    assert sorted(dropped + out["meta"]["box_ids"].tolist()) == list(range(len(boxes)))


@SETTINGS
@given(scene=scenes(), direction=st.sampled_from(["horizontal", "vertical", "diagonal"]))
def test_flip_twice_is_identity(scene, direction):
    h, w, boxes, labels, ignore = scene
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = flip(flip(_results(h, w, boxes, labels, ignore, image.copy()), direction), direction)
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_array_equal(out["boxes"], boxes)
    np.testing.assert_array_equal(out["ignore_boxes"], ignore)
    assert out["meta"]["flip"] is False and out["meta"]["flip_direction"] is None
    np.testing.assert_allclose(out["meta"]["homography"], np.eye(3))


def test_flip_by_hand_and_net_direction():
    res = _results(10, 20, np.array([[2, 1, 5, 4]], np.float32), np.array([0]), np.zeros((0, 4), np.float32))
    out = flip(res, "horizontal")
    assert out["boxes"].tolist() == [[15, 1, 18, 4]] and out["meta"]["flip_direction"] == "horizontal"
    out = flip(out, "vertical")
    assert out["boxes"].tolist() == [[15, 6, 18, 9]] and out["meta"]["flip_direction"] == "diagonal"
    with pytest.raises(ValueError, match="direction"):
        RandomFlip(direction="sideways")


@settings(max_examples=40, deadline=None)
@given(scene=scenes(max_boxes=5), seed=st.integers(0, 2 ** 16))
def test_min_iou_crop_follows_the_min_iou_rule(scene, seed):
    h, w, boxes, labels, ignore = scene
    out = MinIoURandomCrop(rng=seed)(_results(h, w, boxes, labels, ignore))
    meta = out["meta"]
    if "crop_patch" not in meta:  # mode 1: image unchanged
        assert out["image"].shape[:2] == (h, w) and len(out["boxes"]) == len(boxes)
        return
    x1, y1, x2, y2 = meta["crop_patch"]
    patch = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)
    everything = torch.from_numpy(np.concatenate([boxes, ignore]))
    assert float(box_iou(patch, everything).min()) >= meta["crop_min_iou"] - 1e-6
    assert meta["crop_min_iou"] in (0.1, 0.3, 0.5, 0.7, 0.9, 0)
    ph, pw = y2 - y1, x2 - x1  # each within 1 px of the drawn size, whose h / w is in [0.5, 2]
    assert ph + 1 > 0.5 * (pw - 1) and ph - 1 < 2 * (pw + 1)
    assert 0.3 * h - 1 < ph <= h and 0.3 * w - 1 < pw <= w
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (cx > x1) & (cy > y1) & (cx < x2) & (cy < y2)
    assert meta["box_ids"].tolist() == np.nonzero(inside)[0].tolist()
    assert len(out["boxes"]) + len(out["ignore_boxes"]) >= 1
    expected = boxes[inside] - np.array([x1, y1, x1, y1], np.float32)
    expected[:, 0::2] = expected[:, 0::2].clip(0, x2 - x1)
    expected[:, 1::2] = expected[:, 1::2].clip(0, y2 - y1)
    np.testing.assert_array_equal(out["boxes"], expected)


def test_min_iou_crop_reproducible_and_without_boxes():
    scene = (80, 100, np.array([[10, 10, 50, 60], [60, 5, 95, 40]], np.float32), np.array([0, 1]),
             np.zeros((0, 4), np.float32))
    a = [MinIoURandomCrop(rng=3)(_results(*scene))["meta"].get("crop_patch") for _ in range(3)]
    b = [MinIoURandomCrop(rng=3)(_results(*scene))["meta"].get("crop_patch") for _ in range(3)]
    assert a == b
    empty = _results(50, 60, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    out = MinIoURandomCrop(rng=0)(empty)
    assert out["boxes"].shape == (0, 4) and out["image"].shape[0] <= 50


def test_expand_fill_and_offset():
    res = _results(10, 10, np.array([[0, 0, 10, 10]], np.float32), np.array([0]), np.zeros((0, 4), np.float32),
                   np.full((10, 10, 3), 255, np.uint8))
    out = Expand(mean=MEAN, to_rgb=True, ratio_range=(3, 3), prob=1.0, rng=1)(res)
    assert out["image"].shape == (30, 30, 3)
    x1, y1 = (int(v) for v in out["boxes"][0, :2])
    assert out["boxes"][0].tolist() == [x1, y1, x1 + 10, y1 + 10]
    corner = out["image"][0, 0] if (x1, y1) != (0, 0) else out["image"][-1, -1]
    assert corner.tolist() == [123, 116, 103]  # RGB mean, truncated to uint8 as mmdetection
    bgr = Expand(mean=MEAN, to_rgb=False, ratio_range=(3, 3), prob=1.0, rng=1)(
        _results(10, 10, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                 np.full((10, 10, 3), 255, np.uint8)))
    assert (bgr["image"] == [103, 116, 123]).all(axis=-1).sum() == 800
    never = Expand(prob=0.0, rng=0)(_results(*_small()))
    assert never["image"].shape == (8, 8, 3)


def _small():
    return 8, 8, np.array([[1, 1, 4, 4]], np.float32), np.array([0]), np.zeros((0, 4), np.float32)


def test_resize_and_keep_ratio_resize_by_hand():
    assert rescale_size(640, 480, (1333, 800)) == (1067, 800)
    assert rescale_size(480, 640, (1333, 800)) == (800, 1067)
    assert rescale_size(400, 100, (1333, 800)) == (1333, 333)
    assert rescale_size(100, 50, 0.5) == (50, 25)
    res = _results(48, 64, np.array([[8, 4, 40, 44]], np.float32), np.array([0]), np.zeros((0, 4), np.float32))
    out = Pad(size_divisor=32)(KeepRatioResize(scale=(1333, 800))(res))
    assert out["meta"]["content_shape"] == (800, 1067) and out["meta"]["pad_shape"] == (800, 1088)
    assert out["meta"]["img_shape"] == (800, 1088)  # mmcv 2.x: Pad overwrites img_shape
    assert out["image"].shape == (800, 1088, 3)
    sx, sy = out["meta"]["scale_factor"]
    assert sx == pytest.approx(1067 / 64) and sy == pytest.approx(800 / 48)
    np.testing.assert_allclose(out["boxes"], [[8 * sx, 4 * sy, 40 * sx, 44 * sy]], rtol=1e-6)
    out = Resize(scale=300)(_results(*_small()))
    assert out["image"].shape == (300, 300, 3) and out["meta"]["scale_factor"] == (37.5, 37.5)
    out = Resize(scale_factor=0.5)(_results(*_small()))
    assert out["image"].shape == (4, 4, 3)
    with pytest.raises(ValueError, match="scale"):
        Resize()


def test_resize_clips_and_drops_boxes_outside():
    boxes = np.array([[-5, 2, 4, 6], [20, 2, 30, 6]], np.float32)  # second one is outside the 16-wide image
    out = Resize(scale=(32, 16))(_results(8, 16, boxes, np.array([3, 4]), np.zeros((0, 4), np.float32)))
    assert out["boxes"].tolist() == [[0, 4, 8, 12]] and out["labels"].tolist() == [3]
    assert out["meta"]["dropped"] == [{"transform": "Resize", "boxes": [1], "ignore_boxes": []}]


def test_pad_variants():
    base = _results(20, 30, np.array([[1, 1, 5, 5]], np.float32), np.array([0]), np.zeros((0, 4), np.float32),
                    np.full((20, 30, 3), 7, np.uint8))
    out = Pad(size=(40, 50), pad_val=dict(img=(114, 114, 114)))(base)
    assert out["image"].shape == (50, 40, 3) and out["image"][-1, -1].tolist() == [114, 114, 114]
    assert out["image"][0, 0].tolist() == [7, 7, 7] and out["meta"]["content_shape"] == (20, 30)
    assert out["meta"]["img_shape"] == out["meta"]["pad_shape"] == (50, 40)
    assert out["boxes"].tolist() == [[1, 1, 5, 5]]
    bgr = Pad(size=(40, 50), pad_val=dict(img=(10, 20, 30)))(_results(20, 30, np.zeros((0, 4), np.float32),
                                                                     np.zeros(0, np.int64), np.zeros((0, 4), np.float32)))
    assert bgr["image"][-1, -1].tolist() == [30, 20, 10]  # mmdetection's BGR triple on our RGB image
    assert Pad(pad_to_square=True)(_results(*_small()))["image"].shape == (8, 8, 3)
    sq = Pad(pad_to_square=True, size_divisor=32)(
        _results(20, 30, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32)))
    assert sq["meta"]["pad_shape"] == (32, 32)
    with pytest.raises(ValueError, match="smaller than the image"):
        Pad(size=(4, 4))(_results(*_small()))


@SETTINGS
@given(scene=scenes(), seed=st.integers(0, 2 ** 16))
def test_photometric_keeps_boxes_and_is_seeded(scene, seed):
    h, w, boxes, labels, ignore = scene
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    a = PhotoMetricDistortion(rng=seed)(_results(h, w, boxes, labels, ignore, image.copy()))
    b = PhotoMetricDistortion(rng=seed)(_results(h, w, boxes, labels, ignore, image.copy()))
    assert a["image"].dtype == np.float32 and a["image"].shape == (h, w, 3)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["boxes"], boxes)
    _assert_inside(a)


def test_photometric_identity_when_no_step_fires():
    t = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0, rng=0)
    image = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    out = t(_results(6, 7, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                     image.copy()))
    np.testing.assert_allclose(np.sort(out["image"], axis=-1), np.sort(image.astype(np.float32), axis=-1),
                               atol=1e-3)  # at most a channel swap


def test_normalize_and_to_tensor():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 200  # red
    out = Normalize(mean=MEAN, std=(2, 2, 2), to_rgb=True)(
        _results(2, 3, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32), image))
    np.testing.assert_allclose(out["image"][0, 0], [(200 - MEAN[0]) / 2, -MEAN[1] / 2, -MEAN[2] / 2], rtol=1e-6)
    bgr = Normalize(mean=(0, 0, 0), std=(1, 1, 1), to_rgb=False)(
        _results(2, 3, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32), image))
    assert bgr["image"][0, 0].tolist() == [0, 0, 200]
    t = ToTensor()(out)
    assert t["image"].shape == (3, 2, 3) and t["image"].dtype == torch.float32
    assert t["boxes"].shape == (0, 4) and t["labels"].dtype == torch.int64


# --------------------------------------------------------------------------- inverse mapping


def _roundtrip(pipeline, h=60, w=80, seed=0):
    boxes = np.array([[5, 7, 30, 41], [40.5, 10.25, 79, 59]], np.float32)
    res = _results(h, w, boxes, np.array([0, 1]), np.zeros((0, 4), np.float32))
    out = pipeline(res)
    assert len(out["boxes"]) == 2
    return boxes, out


@pytest.mark.parametrize("name,pipeline", [
    ("resize", Compose([Resize(scale=(300, 300))])),
    ("keep_ratio_pad", Compose([KeepRatioResize(scale=(1333, 800)), Pad(size_divisor=32)])),
    ("flip", Compose([RandomFlip(prob=1.0)])),
    ("resize_flip_vertical", Compose([Resize(scale=(123, 77)), RandomFlip(prob=1.0, direction="vertical")])),
    ("expand_resize_flip", Compose([Expand(prob=1.0), Resize(scale=(300, 300)), RandomFlip(prob=1.0)], rng=5)),
    ("tensor", Compose([KeepRatioResize(scale=(320, 320)), RandomFlip(prob=1.0), Normalize(), ToTensor()])),
])
def test_boxes_to_original_inverts_forward(name, pipeline):
    boxes, out = _roundtrip(pipeline)
    back = boxes_to_original(out["boxes"], out["meta"])
    assert type(back) is type(out["boxes"])
    np.testing.assert_allclose(np.asarray(back), boxes, atol=1e-3)
    if name != "expand_resize_flip":  # no homography: undo flip and scale_factor from meta alone
        legacy = {k: v for k, v in out["meta"].items() if k != "homography"}
        np.testing.assert_allclose(np.asarray(boxes_to_original(out["boxes"], legacy)), boxes, atol=1e-3)


def test_boxes_to_original_clips_and_keeps_tensor_dtype():
    meta = dict(ori_shape=(10, 20), img_shape=(20, 40), scale_factor=(2.0, 2.0), flip=False)
    boxes = torch.tensor([[-4.0, 2.0, 50.0, 10.0]], dtype=torch.float64)
    back = boxes_to_original(boxes, meta)
    assert back.dtype == torch.float64 and back.tolist() == [[0, 1, 20, 5]]
    assert boxes_to_original(np.zeros((0, 4)), meta).shape == (0, 4)


# --------------------------------------------------------------------------- pipelines


SSD_TRAIN = [
    dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PhotoMetricDistortion", brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type="Expand", mean=MEAN, to_rgb=True, ratio_range=(1, 4)),
    dict(type="MinIoURandomCrop", min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type="Resize", scale=(300, 300), keep_ratio=False), dict(type="RandomFlip", prob=0.5),
    dict(type="Normalize", mean=MEAN, std=(1, 1, 1), to_rgb=True), dict(type="ToTensor"),
    dict(type="PackDetInputs"),
]


def test_build_ssd_pipeline_is_seeded_and_reproducible():
    def run(seed):
        pipe = build_pipeline(SSD_TRAIN, rng=seed)
        outs = []
        for i in range(6):
            rng = np.random.default_rng(i)
            outs.append(pipe(_results(120, 160, np.array([[10, 20, 90, 100], [100, 5, 150, 60]], np.float32),
                                      np.array([0, 2]), np.zeros((0, 4), np.float32),
                                      rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))))
        return outs

    a, b, c = run(7), run(7), run(8)
    assert [type(t).__name__ for t in build_pipeline(SSD_TRAIN).transforms][0] == "PhotoMetricDistortion"
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["boxes"], y["boxes"])
        assert x["image"].shape == (3, 300, 300)
        assert bool(((x["boxes"] >= 0) & (x["boxes"] <= 300)).all())
    assert any(not torch.equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))


def test_build_pipeline_errors():
    with pytest.raises(ValueError, match=r"step 1: unknown transform type 'CopyPaste'; known: \[.*'Resize'"):
        build_pipeline([dict(type="Resize", scale=(8, 8)), dict(type="CopyPaste")])
    with pytest.raises(ValueError, match=r"step 0 \(Resize\).*unexpected keyword"):
        build_pipeline([dict(type="Resize", scale=(8, 8), bogus=1)])
    with pytest.raises(ValueError, match="must be a dict with a 'type'"):
        build_pipeline([dict(scale=(8, 8))])
    test = build_pipeline([dict(type="Resize", scale=(1333, 800), keep_ratio=True), dict(type="Pad", size_divisor=32)])
    assert isinstance(test.transforms[0], Resize) and test.transforms[0].keep_ratio


def test_random_resize_range():
    t = RandomResize(scale=[(100, 60), (140, 90)], keep_ratio=False, rng=0)
    sizes = {t(_results(*_small()))["image"].shape[:2] for _ in range(20)}
    assert all(60 <= h <= 90 and 100 <= w <= 140 for h, w in sizes) and len(sizes) > 1


def test_random_choice_resize_draws_one_of_its_scales():
    from detengine.data.pipeline import build_pipeline
    scales = [(1333, 640), (1333, 736), (1333, 800)]
    pipe = build_pipeline([dict(type="RandomChoiceResize", scales=scales, keep_ratio=True)], rng=0)
    boxes = np.array([[10, 20, 110, 220]], np.float32)
    seen = set()
    for _ in range(40):
        out = pipe(_results(300, 400, boxes, np.array([1]), np.zeros((0, 4), np.float32)))
        h, w = out["image"].shape[:2]
        seen.add((w, h))
        sx, sy = out["meta"]["scale_factor"]
        np.testing.assert_allclose(out["boxes"], boxes * np.array([sx, sy, sx, sy], np.float32), rtol=1e-6)
    assert seen == {rescale_size(400, 300, s) for s in scales}
    with pytest.raises(ValueError, match="RandomChoiceResize"):
        build_pipeline([dict(type="RandomChoiceResize", scales=scales, keep_ratio=True, colour="red")])


def test_filter_annotations_drops_small_boxes_and_empty_samples_as_mmdetection():
    from detengine.data.pipeline import build_pipeline
    pipe = build_pipeline([dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=True)], rng=0)
    boxes = np.array([[0, 0, 1, 5], [0, 0, 5, 1], [0, 0, 1.5, 1.5], [2, 2, 12, 12]], np.float32)  # w, h must be > 1
    out = pipe(_results(20, 20, boxes, np.array([0, 1, 2, 3]), np.array([[0, 0, 1, 1]], np.float32)))
    np.testing.assert_array_equal(out["boxes"], boxes[2:])
    assert out["labels"].tolist() == [2, 3] and len(out["ignore_boxes"]) == 0
    assert out["meta"]["dropped"] == [{"transform": "FilterAnnotations", "boxes": [0, 1], "ignore_boxes": [0]}]
    tiny = np.array([[0, 0, 1, 1]], np.float32)
    assert pipe(_results(20, 20, tiny, np.array([0]), np.zeros((0, 4), np.float32))) is None   # another sample
    keep = build_pipeline([dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False)], rng=0)
    assert len(keep(_results(20, 20, tiny, np.array([0]), np.zeros((0, 4), np.float32)))["boxes"]) == 0  # as mmdet
    with pytest.raises(ValueError, match="by_mask"):
        build_pipeline([dict(type="FilterAnnotations", by_mask=True)])


def test_the_debug_views_need_only_the_test_pipeline():
    """A train step DetScope lacks stops training with its name, never the trace."""
    from detengine.image_trace import ImageTracer
    from detengine.shipped import find_config
    from detengine.train.data import pipelines_for
    from detengine.train.runner import load_cfg
    cfg = load_cfg(str(find_config("retinanet_r50_fpn_coco")))
    cfg["train_pipeline"] = [*cfg["train_pipeline"], dict(type="Albu", transforms=[])]
    tracer = ImageTracer(cfg, num_classes=3)
    assert tracer.test_pipeline is not None
    with pytest.raises(ValueError, match="'Albu'"):
        pipelines_for(cfg)
