"""The loss path's operation count (≈ GPU kernel launches, ``detengine.launches``) with the GPU's code
paths: it must not grow with the number of priors (the image size) or of boxes. On an H200 RetinaNet's
focal loss in CPU-cache row blocks cost 150 blocks x ~45 launches an image: its training step took
18x the network's (bench/RESULTS.md); a CPU run could not see it."""
from __future__ import annotations

import pytest
import torch

from detengine.launches import gpu_code_paths, loss_path_ops
from detengine.models import build_detector
from detengine.train.runner import load_cfg

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py

# an image's own targets (a batch of one, a trace, an image a batch pass leaves to itself) keep loops over
# the GTs on purpose, with their launches per GT: the dynamic-k assigners take each GT's k cheapest with its
# own torch.topk (mmdetection's pick among costs tied at the k-th place); d2l's assignment is a greedy
# sequence (each pick removes a row and a column)
PER_GT = {"rtmdet_tiny_coco": 3.5, "yolox_tiny_coco": 3.5, "tinyssd_synthetic": 6}
CONFIGS = ["retinanet_r50_fpn_coco", "fcos_r50_fpn_coco", "atss_r50_fpn_coco", "gfl_r50_fpn_coco",
           "tood_r50_fpn_coco", "rtmdet_tiny_coco", "yolox_tiny_coco", "ssd300_coco", "tinyssd_synthetic"]


def batch(size: int, num_gt: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_gt, 2, generator=g) * size * 0.6
    wh = size * 0.1 + torch.rand(num_gt, 2, generator=g) * size * 0.3
    return {"images": torch.randn(1, 3, size, size, generator=g), "gt_boxes": [torch.cat([xy, xy + wh], 1)],
            "gt_labels": [torch.randint(0, 20, (num_gt,), generator=g)]}


def shipped_model(name: str):
    """A shipped config's detector for 20 classes, randomly initialised, in training mode;
    ``"<config>@initial"``: TOOD in its initial (ATSS) epochs."""
    config, _, stage = name.partition("@")
    cfg = load_cfg(f"resources/configs/{config}.py")["model"]
    cfg["bbox_head"]["num_classes"] = 20
    cfg.get("backbone", {}).pop("init_cfg", None)
    torch.manual_seed(0)
    model = build_detector(cfg).train()
    if stage == "initial":
        model.core.set_epoch(0)
        assert model.core.initial_stage
    return model


@pytest.mark.parametrize("name", CONFIGS)
def test_the_loss_paths_launches_do_not_grow_with_priors_or_boxes(name):
    model = shipped_model(name)
    small, large = (300, 300) if "ssd300" in name else (128, 256)
    if small == large:          # SSD300's priors are fixed: the boxes only
        small = large = 300
    with torch.no_grad():       # the network's outputs of each size once (the counts do not depend on them)
        outs = {size: model(batch(size, 3)["images"]) for size in (small, large)}
    with gpu_code_paths():
        loss_path_ops(model, batch(small, 3), outs[small])           # first calls fill the prior caches
        loss_path_ops(model, batch(large, 3), outs[large])
        base = loss_path_ops(model, batch(small, 3), outs[small])
        bigger = loss_path_ops(model, batch(large, 3, seed=1), outs[large])
        more_gts = loss_path_ops(model, batch(small, 40, seed=2), outs[small])
    assert bigger.ops == base.ops, f"{name}: launches grew with the priors: {bigger.ops - base.ops}"
    allowed = PER_GT.get(name, 0) * (40 - 3)
    assert more_gts.kernels - base.kernels <= allowed, f"{name}: launches grew with the boxes: {more_gts.ops - base.ops}"
    assert base.kernels < 800 and base.syncs <= 16, (base.kernels, base.syncs)


def _three_images(size: int, num_gt: int, seeds=(3, 4, 5)) -> dict:
    parts = [batch(size, num_gt, seed) for seed in seeds]
    return {"images": torch.cat([p["images"] for p in parts]), "gt_boxes": [p["gt_boxes"][0] for p in parts],
            "gt_labels": [p["gt_labels"][0] for p in parts]}


# heads whose training step makes the batch's targets in one pass (MaxIoU, FCOS, ATSS, DSL, task-aligned,
# SimOTA, d2l's greedy matching: test_batch_targets.py) and computes its losses in one call (SSD's and
# TinySSD's mining per image inside it), with the tensors from host numbers each may make: FCOS's and ATSS's
# float32 normalisers (``reduce_mean`` under torchrun), made for the host (TOOD: task-aligned; ATSS's first epochs)
BATCHED = {"retinanet_r50_fpn_coco": 0, "fcos_r50_fpn_coco": 1, "atss_r50_fpn_coco": 1, "rtmdet_tiny_coco": 0,
           "gfl_r50_fpn_coco": 1, "tood_r50_fpn_coco": 1, "tood_r50_fpn_coco@initial": 1,
           "yolox_tiny_coco": 0, "ssd300_coco": 0, "tinyssd_synthetic": 0}
PER_IMAGE = 2       # launches an image may add to a batch (none today: the GTs padded in one copy)


@pytest.mark.parametrize("name", sorted(BATCHED))
def test_a_batch_loss_in_one_call_equals_the_images_sum_and_saves_its_launches(name):
    """A training step (the GPU's code paths) makes the batch's targets in one pass where the head can and
    computes the batch's losses in one call (``batch_loss_terms``); a trace asks for each image's own (the
    per-image path): the same totals within float summation order, the same gradients, and the launches
    paid once, not once an image."""
    from tests.floats import assert_ulp_close
    model = shipped_model(name)
    size = 300 if name.startswith("ssd300") else 256
    data = _three_images(size, 6)
    with torch.no_grad():
        cls, reg, sizes = model(data["images"])
    got = {}
    for trace_index in (None, 0):
        c, r = cls.clone().requires_grad_(), reg.clone().requires_grad_()
        with gpu_code_paths():
            losses, _ = model.loss_from_outputs(data, (c, r, sizes), trace_index=trace_index)
        sum(losses.values()).backward()
        got[trace_index] = (losses, c.grad, r.grad)
    (batched, gc, gr), (per_image, gc_ref, gr_ref) = got[None], got[0]
    assert set(batched) == set(per_image)
    for k in batched:
        assert_ulp_close(batched[k].detach(), per_image[k].detach(), max_ulp=16, what=k)   # 3 partial sums added
    torch.testing.assert_close(gc, gc_ref, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(gr, gr_ref, rtol=1e-6, atol=1e-10)
    with gpu_code_paths():      # a batch's path (one image: per image); the first two images' outputs
        two = loss_path_ops(model, _three_images(size, 6, seeds=(3, 4)), (cls[:2], reg[:2], sizes))
        three = loss_path_ops(model, data, (cls, reg, sizes))
    assert three.kernels - two.kernels <= PER_IMAGE, (two.kernels, three.kernels)
    # a tensor made from host numbers is a blocking copy on a GPU, a host sync (``host_values``, ``constant``)
    assert two.host_copies == three.host_copies == BATCHED[name], (two.host_copies, three.host_copies)


def test_host_values_and_constants_on_the_cpu():
    """``host_values``: host numbers on a device (pinned and non-blocking on a GPU: bench/gpu_batch_targets.py
    runs it there); ``constant``: made once per values, dtype and device, not counted as a host copy again."""
    from detengine.launches import OpCounter
    from detengine.transfers import constant, host_values
    t = host_values([(3, 4), (5, 6)], "cpu", torch.float32)
    assert t.dtype == torch.float32 and t.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    like = torch.zeros(2, dtype=torch.float64)
    first = constant([0.1, 0.2], like)
    with OpCounter() as counter:
        again = constant([0.1, 0.2], like)
        host_values([1, 2], "cpu")
    assert again is first and first.dtype == torch.float64 and first.tolist() == [0.1, 0.2]
    assert counter.host_copies == 0 and counter.lifted == 1
    assert constant([0.1, 0.2], like.float()) is not first
    with OpCounter() as counter:
        torch.tensor([1, 2]) + like.new_tensor([1.0])
    assert counter.host_copies == 2


def test_a_constant_first_made_under_inference_mode_serves_a_later_backward():
    """The cache keeps a normal tensor whatever mode its first call ran in: a prediction under
    ``torch.inference_mode`` before a training step (an inference tensor cannot be saved for backward);
    a tensor subclass (a fake tensor while tracing) gets a tensor of its own, not the cache's."""
    from detengine.boxes import bbox_overlaps
    from detengine.coders import DeltaXYWHBBoxCoder
    from detengine.transfers import _CONSTANTS, constant
    saved = dict(_CONSTANTS)
    _CONSTANTS.clear()
    try:
        coder, priors = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2)), torch.tensor([[0.0, 0, 10, 10]])
        boxes = torch.tensor([[1.0, 1, 8, 9]])
        with torch.inference_mode():
            coder.decode(priors, torch.zeros(1, 4))
            bbox_overlaps(boxes, priors, mode="giou", is_aligned=True)
        assert _CONSTANTS and not any(t.is_inference() for t in _CONSTANTS.values())
        deltas = torch.zeros(1, 4, requires_grad=True)
        bbox_overlaps(coder.decode(priors, deltas), boxes, mode="giou", is_aligned=True).sum().backward()
        assert deltas.grad is not None and torch.isfinite(deltas.grad).all()

        class Marked(torch.Tensor):
            pass
        mine = constant([0.5], torch.zeros(1).as_subclass(Marked))
        assert mine.tolist() == [0.5] and all(t is not mine for t in _CONSTANTS.values())
    finally:
        _CONSTANTS.clear()
        _CONSTANTS.update(saved)

