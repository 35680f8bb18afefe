"""Non-square images through each shipped test pipeline, as mmdetection 3.3.0 pads them
(``fixtures/mmdet_padding_reference.pt``, made with the real mmdetection: README there).

mmcv 2.x's ``Pad`` overwrites ``img_shape`` with the padded size, ``DetDataPreprocessor`` gives
each image the ``pad_shape`` of its own size rounded up to ``pad_size_divisor``, valid flags come
from ``pad_shape``, and decoded boxes are clipped at ``img_shape`` and not again after rescaling.
The shapes, the valid priors, the positives and the losses must be mmdetection's.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from detengine.data.collate import collate
from detengine.models import build_detector
from detengine.train.data import pipelines_for
from detengine.train.runner import load_cfg
from tests.engine.fixtures.det_random import det_randn, det_uniform

from .runs import CONFIGS

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_padding_reference.pt"
CASES = {"strip": ((21, 500), [[10, 2, 60, 19], [420, 0, 495, 21]], [0, 3]),
         "wide": ((256, 320), [[20, 30, 140, 200], [200, 180, 318, 255]], [1, 2]),
         "tall": ((333, 200), [[5, 5, 190, 100], [50, 250, 120, 330]], [4, 0])}
# (config, batch): RetinaNet's 1333 x 800 levels make big random head outputs; the 2-image batch
# pins that each image keeps its own pad_shape inside a bigger batch
RUNS = [("ssd300_coco", "strip"), ("ssd300_coco", "wide"), ("ssd300_coco", "tall"),
        ("retinanet_r50_fpn_coco", "strip"), ("retinanet_r50_fpn_coco", "wide"),
        ("retinanet_r50_fpn_coco", "strip+wide"),
        ("rtmdet_tiny_coco", "strip"), ("rtmdet_tiny_coco", "wide"), ("rtmdet_tiny_coco", "tall")]


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _image(h: int, w: int) -> np.ndarray:
    """image[y, x, c] = (7x + 13y + 50c) mod 256, RGB (the fixture README's formula)."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((x * 7 + y * 13 + c * 50) % 256).astype(np.uint8)


def _sample(case: str) -> dict:
    (h, w), boxes, labels = CASES[case]
    return {"image": _image(h, w), "boxes": np.asarray(boxes, np.float32), "labels": np.asarray(labels, np.int64),
            "ignore_boxes": np.zeros((0, 4), np.float32),
            "meta": {"ori_shape": (h, w), "img_shape": (h, w), "homography": np.eye(3)}}


def _recipe(r: dict) -> torch.Tensor:
    """One level's head output from the fixture's recipe (built level by level: they are big)."""
    if r["generator"] == "det_randn":
        t = det_randn(tuple(r["shape"]), r["seed"], r.get("scale", 1.0), r.get("shift", 0.0))
    else:  # RTMDet's distances: (0.5 + 2.5 u) * stride
        t = ((0.5 + 2.5 * det_uniform(math.prod(r["shape"]), r["seed"]).view(*r["shape"])) * r["stride"]).float()
    assert torch.equal(t.flatten()[:8], r["first8"].flatten())
    return t


def _flat(levels: list[torch.Tensor], k: int) -> torch.Tensor:
    """[(B, A*K, H, W)] -> (B, sum HWA, K), the head's permute/reshape."""
    return torch.cat([t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, k) for t in levels], dim=1)


def _batch(name: str, key: str):
    cfg = load_cfg(CONFIGS / f"{name}.py")
    _, test = pipelines_for(cfg)
    divisor = (cfg["model"].get("data_preprocessor") or {}).get("pad_size_divisor")
    samples = [test(_sample(case)) for case in key.split("+")]
    return cfg, collate(samples, size_divisor=divisor if divisor and divisor > 1 else None)


@pytest.mark.parametrize("name,key", RUNS)
def test_shapes_valid_priors_positives_and_losses_are_mmdetections(R, name, key):
    ref = R[f"{name}/{key}"]
    cfg, batch = _batch(name, key)
    assert tuple(batch["images"].shape) == tuple(ref["batch_input_shape"])
    for meta, want in zip(batch["metas"], ref["images"], strict=True):
        for field in ("ori_shape", "img_shape", "pad_shape", "batch_input_shape"):
            assert tuple(meta[field]) == tuple(want[field]), (want["name"], field)
        np.testing.assert_allclose(meta["scale_factor"], want["scale_factor"], rtol=1e-6)
    for boxes, want in zip(batch["gt_boxes"], ref["images"], strict=True):
        torch.testing.assert_close(boxes, want["gt_bboxes_resized"], rtol=1e-6, atol=1e-4)  # the GT the loss sees

    model = build_detector(cfg["model"])
    k = model.core.cls_channels()
    cls = _flat([_recipe(r) for r in ref["cls_scores"]], k)
    reg = _flat([_recipe(r) for r in ref["bbox_preds"]], 4)
    sizes = [tuple(s) for s in ref["featmap_sizes"]]
    priors = model.priors_for(batch["images"], sizes, batch["metas"])
    assert [int(p.valid.sum()) for p in priors] == [im["valid_count"] for im in ref["images"]]
    for i, want in enumerate(ref["images"]):
        _, trace = model.loss_from_outputs(batch, (cls, reg, sizes), trace_index=i)
        assert trace.coverage.num_pos.tolist() == list(want["pos_per_gt_resized_gt"]), want["name"]
    losses, _ = model.loss_from_outputs(batch, (cls, reg, sizes))
    loss = ref["loss_resized_gt"]
    for term in ("loss_cls", "loss_bbox"):
        want = loss.get(f"{term}_total", None)
        want = sum(loss[term]) if want is None else want
        assert float(losses[term]) == pytest.approx(float(want), rel=1e-5, abs=1e-6), term


def test_rtmdet_predictions_are_clipped_at_the_padded_input_only(R):
    """mmdetection clips decoded boxes at img_shape, the padded 640 x 640, and rescales them to
    the 320 x 256 image without clipping again: boxes reach y = 320 (past the image's 256)."""
    ref = R["rtmdet_tiny_coco/wide"]
    cfg, batch = _batch("rtmdet_tiny_coco", "wide")
    model = build_detector(cfg["model"])
    cls = _flat([_recipe(r) for r in ref["cls_scores"]], 80)
    reg = _flat([_recipe(r) for r in ref["bbox_preds"]], 4)
    sizes = [tuple(s) for s in ref["featmap_sizes"]]
    from detengine.data.transforms import boxes_to_original
    priors = model.priors_for(batch["images"], sizes, batch["metas"])[0]
    meta = batch["metas"][0]
    record = model.core.predict(cls[0], reg[0], priors, tuple(meta["img_shape"]))
    boxes = boxes_to_original(record.boxes, meta, clip=False)
    want = ref["predict_rescale"]
    assert boxes.shape == want["bboxes"].shape
    torch.testing.assert_close(record.scores, want["scores"], rtol=1e-5, atol=1e-6)
    assert torch.equal(record.labels, want["labels"].long())
    torch.testing.assert_close(boxes, want["bboxes"], rtol=1e-5, atol=1e-3)
    assert float(boxes[:, 3].max()) == pytest.approx(320.0) and float(boxes[:, 3].max()) > 256
