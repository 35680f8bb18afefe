"""A training step off the CPU makes its batch's targets in one pass (``HeadCore.batch_targets``, GTs
padded to the most any image has): every integer (labels, positives, weights, which priors take part)
equal to each image's own targets, the box targets within a few ulp (the coder's log may take a vector
or a scalar path by a row's place in the tensor), the normalisers' parts equal."""
from __future__ import annotations

import pytest
import torch

from detengine.builder import build_head_core
from detengine.heads.base import valid_region
from detengine.train.runner import load_cfg
from tests.floats import assert_ulp_close

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


def _core(name: str):
    cfg = load_cfg(f"resources/configs/{name}.py")["model"]
    cfg["bbox_head"]["num_classes"] = 20
    return build_head_core(cfg)


def _batch(size: int, counts, seed: int = 0, awkward: bool = True) -> dict:
    """Images with ``counts`` boxes; with ``awkward`` each image of more than 3 boxes has a duplicate box,
    a box on an anchor's own corners, a zero-area one, an image of 2 boxes has them on the ends of FCOS's
    regress ranges; the images differ in size and padding."""
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for c in counts:
        xy = torch.rand(c, 2, generator=g) * size * 0.6
        wh = size * 0.02 + torch.rand(c, 2, generator=g) * size * 0.4
        b = torch.cat([xy, xy + wh], 1)
        if awkward and c > 3:
            b[1] = b[0]                                                    # identical boxes: ties
            b[2] = torch.tensor([16.0, 16.0, 48.0, 48.0])                  # on a grid: IoU 1 ties
            b[3, 2:] = b[3, :2]                                            # zero area: IoU 0 everywhere
        if awkward and c == 2:      # FCOS points (100, 100) at stride 8, (200, 200) at 16: max distance 64,
            b[:] = torch.tensor([[36.0, 90.0, 110.0, 110.0],            # both ends of two regress ranges
                                 [136.0, 190.0, 210.0, 210.0]])
        boxes.append(b)
        labels.append(torch.randint(0, 20, (c,), generator=g))
    n = len(counts)
    metas = [{"img_shape": (size - 40 * i, size - 17 * i), "pad_shape": (size - 32 * i, size - 16 * i)}
             for i in range(n)]
    return {"size": size, "gt_boxes": boxes, "gt_labels": labels, "metas": metas}


def _inputs(core, data):
    """Each image's priors (valid flags after its pad shape), img shape, and random head outputs."""
    shape = (data["size"], data["size"])
    priors = [core.priors(shape, pad_shape=valid_region(m, shape)) for m in data["metas"]]
    g = torch.Generator().manual_seed(7)
    n, a = len(priors), len(priors[0])
    cls = torch.randn(n, a, core.cls_channels(), generator=g)
    reg = torch.randn(n, a, 4, generator=g) * 0.1
    return priors, [m["img_shape"] for m in data["metas"]], cls, reg


def _both(core, data):
    priors, shapes, cls, reg = _inputs(core, data)
    own = [core.targets(p, b, lb, s, cls_scores=c, bbox_preds=r)
           for p, b, lb, s, c, r in zip(priors, data["gt_boxes"], data["gt_labels"], shapes, cls, reg)]
    batched = core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, None, cls, reg)
    return core, own, batched


def _assert_same(core, own, batched):
    assert batched is not None
    joined, parts = batched
    ref = core.join_targets(own)
    for name in ("labels", "label_weights", "bbox_weights", "inside"):
        got, want = getattr(joined, name), getattr(ref, name)
        assert got.dtype == want.dtype and torch.equal(got, want), name
    assert torch.equal(joined.sampling_result.pos_inds, ref.sampling_result.pos_inds)
    assert_ulp_close(joined.bbox_targets, ref.bbox_targets, max_ulp=4, what="bbox_targets")
    assert set(joined.extras) == set(ref.extras)
    for k in ref.extras:
        assert_ulp_close(joined.extras[k], ref.extras[k], max_ulp=4, what=k)
    want_parts = [core.avg_factor_of(t) for t in own]
    assert len(parts) == len(want_parts)
    for got, want in zip(parts, want_parts):
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        assert got[0] == want[0]                                        # a count
        for g, w in zip(got[1:], want[1:]):                             # a sum of centerness targets
            assert g == pytest.approx(w, rel=1e-6)
    return ref


@pytest.mark.parametrize("name,size,border", [("retinanet_r50_fpn_coco", 320, -1), ("retinanet_r50_fpn_coco", 320, 0),
                                               ("ssd300_coco", 300, -1)])
def test_max_iou_targets_of_a_batch_equal_each_images_own(name, size, border):
    """RetinaNet (every GT takes all its tied best anchors) and SSD (one each, the last GT wins); with
    ``allowed_border`` 0 the anchors past each image's own size take no part; an image without boxes."""
    core = _core(name)
    core.allowed_border = border
    core, own, batched = _both(core, _batch(size, [7, 0, 2, 1, 30]))
    ref = _assert_same(core, own, batched)
    assert 0 < int(ref.sampling_result.pos_inds.numel()) and not bool(ref.inside.all())


@pytest.mark.parametrize("center_sampling", [False, True])
def test_fcos_targets_of_a_batch_equal_each_images_own(center_sampling):
    core = _core("fcos_r50_fpn_coco")
    core.assigner.center_sampling = center_sampling
    core.norm_on_bbox = center_sampling
    core, own, batched = _both(core, _batch(320, [7, 0, 2, 30], seed=1))
    _assert_same(core, own, batched)


def test_a_batch_without_any_box_is_all_negatives():
    for name, size in (("retinanet_r50_fpn_coco", 256), ("fcos_r50_fpn_coco", 256)):
        core, own, batched = _both(_core(name), _batch(size, [0, 0]))
        ref = _assert_same(core, own, batched)
        assert int(ref.sampling_result.pos_inds.numel()) == 0


def test_heads_and_inputs_without_a_batched_form_keep_each_images_targets():
    """An assigner without a batched form (ssd.pytorch's matching) and ignored boxes the assigner must
    see (MaxIoU's ``ignore_iof_thr``): None, the step then makes each image's targets."""
    from detengine.assigners import SSDPytorchMatcher
    tinyssd = _core("tinyssd_synthetic")
    tinyssd.assigner = SSDPytorchMatcher(threshold=0.5)
    _, _, batched = _both(tinyssd, _batch(256, [3, 2], awkward=False))
    assert batched is None
    core = _core("retinanet_r50_fpn_coco")
    core.assigner.ignore_iof_thr = 0.5
    data = _batch(256, [3, 2], awkward=False)
    priors, shapes, cls, reg = _inputs(core, data)
    ignores = [torch.tensor([[0.0, 0.0, 50.0, 50.0]]), torch.zeros(0, 4)]
    assert core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, ignores, cls, reg) is None
    assert core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, [None, None], cls, reg) is not None


def test_the_cpu_step_keeps_each_images_targets():
    """On the CPU padding every image to the most boxes costs more than it saves (bench figure in
    ``detengine.heads.base._batch_targets_pay``): the step there makes each image's targets."""
    from detengine.heads import base
    assert not base._batch_targets_pay(torch.zeros(1))
    assert base._batch_targets_pay(torch.zeros(1, device="meta"))


def _rtmdet_inputs(core, data, seed):
    """RTMDet's priors and predictions: logits ~N(0, 1), boxes 0.5-4.5 strides from each point."""
    shape = (data["size"], data["size"])
    priors = [core.priors(shape, pad_shape=valid_region(m, shape)) for m in data["metas"]]
    g = torch.Generator().manual_seed(seed)
    n, a = len(priors), len(priors[0])
    cls = torch.randn(n, a, core.cls_channels(), generator=g)
    reg = (torch.rand(n, a, 4, generator=g) * 4 + 0.5) * priors[0].tensor[:, 2:3]
    return priors, [m["img_shape"] for m in data["metas"]], cls, reg


@pytest.mark.parametrize("seed", range(4))
def test_dynamic_soft_label_targets_of_a_batch_equal_each_images_own(seed):
    """RTMDet: each GT's k cheapest from one sorted top-k of the batch, the matched IoUs as the soft
    targets and the normaliser's parts."""
    core = _core("rtmdet_tiny_coco")
    data = _batch(320, [7, 0, 2, 1, 30, 12][:3 + seed], seed=seed)
    priors, shapes, cls, reg = _rtmdet_inputs(core, data, seed)
    own = [core.targets(p, b, lb, s, cls_scores=c, bbox_preds=r)
           for p, b, lb, s, c, r in zip(priors, data["gt_boxes"], data["gt_labels"], shapes, cls, reg)]
    batched = core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, None, cls, reg)
    ref = _assert_same(core, own, batched)
    assert int(ref.sampling_result.pos_inds.numel()) > 0


def _spy(assigner) -> list:
    """Counts the assigner's per-image calls (an image the batch assigns on its own)."""
    calls, own = [], assigner.assign

    def assign(*args, **kwargs):
        calls.append(1)
        return own(*args, **kwargs)
    assigner.assign = assign
    return calls


def test_dynamic_soft_label_ties_at_the_kth_cost_keep_each_images_own():
    """A GT centred between four points with the same predictions around each: their costs tie, and
    ``torch.topk`` picks among them by its own rule per GT: that image is assigned on its own, the
    other in the batch's pass."""
    core = _core("rtmdet_tiny_coco")
    shape = (256, 256)
    priors = [core.priors(shape)] * 2
    a = len(priors[0])
    cls = torch.zeros(2, a, core.cls_channels())
    reg = priors[0].tensor[:, 2:3].expand(2, a, 4) * 2.0
    labels = [torch.tensor([3]), torch.tensor([5])]
    for first, alone in (([40.0, 40.0, 88.0, 88.0], 1), ([41.0, 40.0, 88.0, 88.5], 0)):
        boxes = [torch.tensor([first]), torch.tensor([[100.0, 20.0, 180.0, 120.0]])]
        own = [core.targets(p, b, lb, shape, cls_scores=c, bbox_preds=r)
               for p, b, lb, c, r in zip(priors, boxes, labels, cls, reg)]
        calls = _spy(core.assigner)
        _assert_same(core, own, core.batch_targets(priors, boxes, labels, [shape] * 2, None, cls, reg))
        del core.assigner.assign
        assert len(calls) == alone, first


@pytest.mark.parametrize("name", ["atss_r50_fpn_coco", "gfl_r50_fpn_coco"])
def test_atss_targets_of_a_batch_equal_each_images_own(name):
    """ATSS (and GFL's targets on it): each level's k nearest from one sorted top-(k + 1) of the batch.
    An image whose GT centre lies on the grid's symmetry with the tied priors' IoUs unequal (a wide box:
    ``torch.topk``'s order among them is its own, and the threshold's mean and std see it) or whose small
    padded size leaves a level fewer than k priors inside is assigned on its own; the others, a square box
    on the symmetry too (tied distances, equal IoUs), in the batch's pass."""
    core = _core(name)
    data = _batch(512, [7, 5, 30, 12], seed=5, awkward=False)
    data["gt_boxes"][1][0] = torch.tensor([156.0, 224.0, 356.0, 288.0])   # centre (256, 256), wide: unequal IoUs
    data["gt_boxes"][0][0] = torch.tensor([16.0, 16.0, 48.0, 48.0])       # centre (32, 32), square: equal IoUs
    data["metas"][2] = {"img_shape": (512, 512), "pad_shape": (512, 512)}
    data["metas"][3] = {"img_shape": (100, 90), "pad_shape": (128, 96)}   # its stride-128 level: 1 prior inside
    priors, shapes, cls, reg = _inputs(core, data)
    own = [core.targets(p, b, lb, s, cls_scores=c, bbox_preds=r)
           for p, b, lb, s, c, r in zip(priors, data["gt_boxes"], data["gt_labels"], shapes, cls, reg)]
    calls = _spy(core.assigner)
    ref = _assert_same(core, own, core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, None, cls,
                                                     reg))
    assert len(calls) == 2 and int(ref.sampling_result.pos_inds.numel()) > 0


def _tood_inputs(core, data, seed):
    """TOOD's priors and predictions: probabilities U(0, 1), boxes 1-4 strides around each anchor centre."""
    shape = (data["size"], data["size"])
    priors = [core.priors(shape, pad_shape=valid_region(m, shape)) for m in data["metas"]]
    g = torch.Generator().manual_seed(seed)
    n, a = len(priors), len(priors[0])
    centers, strides = priors[0].centers, priors[0].prior_strides
    reg = torch.cat([centers - strides * (1 + 3 * torch.rand(n, a, 2, generator=g)),
                     centers + strides * (1 + 3 * torch.rand(n, a, 2, generator=g))], -1)
    return priors, [m["img_shape"] for m in data["metas"]], torch.rand(n, a, core.cls_channels(), generator=g), reg


@pytest.mark.parametrize("epoch", [0, None])
def test_tood_targets_of_a_batch_equal_each_images_own_in_both_stages(epoch):
    """TOOD before ``initial_epoch`` (ATSS, the anchor centerness as box weights) and after (task-aligned:
    each GT's top-k metrics from one top-(k + 1) of the batch, the metrics normalised per GT)."""
    core = _core("tood_r50_fpn_coco")
    core.set_epoch(epoch)
    data = _batch(512, [7, 0, 2, 30], seed=2)
    for m in data["metas"]:
        m.update(img_shape=(512, 512), pad_shape=(512, 512))
    priors, shapes, cls, reg = _tood_inputs(core, data, 2)
    own = [core.targets(p, b, lb, s, cls_scores=c, bbox_preds=r)
           for p, b, lb, s, c, r in zip(priors, data["gt_boxes"], data["gt_labels"], shapes, cls, reg)]
    ref = _assert_same(core, own, core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, None, cls,
                                                     reg))
    assert int(ref.sampling_result.pos_inds.numel()) > 0


def test_task_aligned_ties_at_the_kth_metric_keep_each_images_own():
    """Every anchor predicting the GT's own box with the same probability: the metrics tie above 0 at each
    GT's k-th place, where ``torch.topk``'s pick is its own: that image is assigned on its own."""
    core = _core("tood_r50_fpn_coco")
    shape = (256, 256)
    priors = [core.priors(shape)] * 2
    boxes = [torch.tensor([[40.0, 40.0, 120.0, 100.0]]), torch.tensor([[100.0, 20.0, 180.0, 120.0]])]
    labels = [torch.tensor([3]), torch.tensor([5])]
    _, _, cls, reg = _tood_inputs(core, {"size": 256, "metas": [{"img_shape": shape}] * 2}, 3)
    cls[0] = 0.5
    reg[0] = boxes[0]
    own = [core.targets(p, b, lb, shape, cls_scores=c, bbox_preds=r) for p, b, lb, c, r in zip(priors, boxes, labels,
                                                                                                 cls, reg)]
    calls = _spy(core.assigner)
    _assert_same(core, own, core.batch_targets(priors, boxes, labels, [shape] * 2, None, cls, reg))
    assert len(calls) == 1


def _mining_cases():
    """(losses, positives, negative pool) of a batch of 6 images: random; tied losses across the k-th
    place; every loss equal; no positive; more wanted than the pool holds; a NaN loss; zero losses beside
    the positives (ssd.pytorch's ranks the positives among them)."""
    g = torch.Generator().manual_seed(11)
    a = 300
    loss = torch.rand(6, a, generator=g)
    pos = torch.rand(6, a, generator=g) < 0.05
    pool = ~pos & (torch.rand(6, a, generator=g) < 0.9)                       # some priors ignored
    loss[1, :200] = 0.5                                                       # a tie across the k-th place
    loss[2] = 0.25                                                            # every loss the same
    pos[3] = False                                                            # no positive: no negative
    pos[4, :90] = True                                                        # 3 x 90 > the pool
    pool[4] = ~pos[4]
    loss[5, 7] = float("nan")
    loss[0, 100:] = 0.0                                                       # zeros ranked past the others
    return loss, pos, pool


@pytest.mark.parametrize("mode", ["mmdet", "ssd_pytorch"])
def test_hard_negatives_of_a_batch_equal_each_images_own(mode):
    from detengine.samplers import batch_hard_negative_mask, hard_negative_mask
    loss, pos, pool = _mining_cases()
    got = batch_hard_negative_mask(loss, pos, pool, 3, mode)
    for b in range(loss.shape[0]):
        want = hard_negative_mask(loss[b], pos[b], pool[b], 3, mode)
        assert torch.equal(got[b], want), (mode, b)
    assert not (got & pos).any()
    assert int(got[0].sum()) == 3 * int(pos[0].sum())


@pytest.mark.parametrize("name", ["ssd300_coco", "tinyssd_synthetic"])
@pytest.mark.parametrize("ratio", [None, 3])
def test_mined_losses_of_a_batch_equal_the_images_sum(name, ratio):
    """SSD's (and TinySSD's, d2l's means or SSD-style mining) losses of a batch in one call: each image's
    hard negatives and normaliser its own, the summed terms within float order, the same gradients."""
    from tests.floats import assert_ulp_close
    core = _core(name)
    if name.startswith("tinyssd"):
        core.neg_pos_ratio = ratio
    elif ratio is None:
        core.mining = "ssd_pytorch"
    data = _batch(300, [5, 0, 12, 1], awkward=False)         # a zero-area GT: a NaN gradient either way
    priors, shapes, cls, reg = _inputs(core, data)
    hardest = cls[0, 0].clone()
    hardest[0 if name.startswith("tinyssd") else -1] = -8.0                    # background far off
    cls[0, :2000] = hardest              # the hardest negatives tie across the k-th place: the kernel's pick
    targets = [core.targets(p, b, lb, s) for p, b, lb, s in zip(priors, data["gt_boxes"], data["gt_labels"], shapes)]
    avg = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    got = {}
    for way in ("batch", "images"):
        c, r = cls.clone().requires_grad_(), reg.clone().requires_grad_()
        if way == "batch":
            terms = core.batch_loss_terms(c, r, priors, targets, avg)
        else:
            per = [core.loss_image(ci, ri, p, t, avg) for ci, ri, p, t in zip(c, r, priors, targets)]
            terms = {k: sum(loss.terms[k] for loss in per) for k in per[0].terms}
        sum(terms.values()).backward()
        got[way] = (terms, c.grad, r.grad)
    (terms, gc, gr), (ref, gc_ref, gr_ref) = got["batch"], got["images"]
    assert set(terms) == set(ref)
    for k in ref:
        assert_ulp_close(terms[k].detach(), ref[k].detach(), max_ulp=16, what=k)
    torch.testing.assert_close(gc, gc_ref, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(gr, gr_ref, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_d2l_greedy_targets_of_a_batch_equal_each_images_own(seed):
    """TinySSD's targets (d2l's greedy matching) of a batch: the picks of every image at once, an image
    with fewer boxes idle past its own; identical boxes (tied IoUs: the first in d2l's row-major order),
    an anchor's own box, a zero-area box, an image without boxes; some priors invalid (padding)."""
    core = _core("tinyssd_synthetic")
    counts = [9, 0, 4, 17]
    data = _batch(128, counts[seed:] + counts[:seed], seed=seed)       # the config's size: priors past the pad
    core, own, batched = _both(core, data)
    ref = _assert_same(core, own, batched)
    assert int(ref.sampling_result.pos_inds.numel()) > 0 and not bool(ref.inside.all())


def test_d2l_greedy_with_fewer_inside_anchors_than_boxes_keeps_the_images_own():
    from detengine.assigners import D2LGreedyAssigner
    from detengine.heads.base import PaddedGTs
    g = torch.Generator().manual_seed(5)
    priors = torch.rand(12, 2, generator=g).repeat(1, 2) * 50 + torch.tensor([0.0, 0.0, 20.0, 20.0])
    boxes = [torch.rand(n, 2, generator=g).repeat(1, 2) * 50 + torch.tensor([0.0, 0.0, 15.0, 15.0]) for n in (3, 7)]
    labels = [torch.zeros(len(b), dtype=torch.long) for b in boxes]
    inside = torch.ones(2, 12, dtype=torch.bool)
    inside[1, :7] = False                                                 # 5 inside anchors for 7 boxes
    assigner = D2LGreedyAssigner(iou_threshold=0.5)
    got = assigner.assign_batch(priors, inside, PaddedGTs.of(boxes, labels, priors))
    for b in range(2):
        want = torch.full((12,), -1, dtype=torch.long)
        want[inside[b]] = assigner.assign(priors[inside[b]], boxes[b], labels[b]).gt_inds
        assert torch.equal(got[b], want), b


def _yolox_inputs(core, data, seed, untrained=False):
    """YOLOX points of the batch's size and head outputs: random, or (``untrained``) a fresh head's
    equal scores, where SimOTA's costs tie on the 1e5 penalty's float grid."""
    shape = (data["size"], data["size"])
    priors = [core.priors(shape)] * len(data["gt_boxes"])
    g = torch.Generator().manual_seed(seed)
    n, a = len(priors), len(priors[0])
    if untrained:
        cls, reg = core.init_predictions(priors[0])
        cls, reg = cls.expand(n, -1, -1).clone(), reg.expand(n, -1, -1).clone()
        reg[1:] += torch.randn(n - 1, a, 4, generator=g) * 0.3              # the first image stays all tied
    else:
        cls = torch.randn(n, a, core.cls_channels(), generator=g) * 2
        reg = torch.randn(n, a, 4, generator=g) * 0.3
    return priors, cls, reg


@pytest.mark.parametrize("seed,untrained", [(0, False), (1, False), (2, True)])
def test_sim_ota_targets_of_a_batch_equal_each_images_own(seed, untrained):
    """YOLOX's targets of a batch (SimOTA on every image at once): positives, GTs, class, IoU, L1 and
    objectness targets equal to each image's own; near ties (an untrained head's equal scores, identical
    boxes, a zero-area box, an image with one tiny box) go to the image's own assignment."""
    core = _core("yolox_tiny_coco")
    data = _batch(256, [9, 0, 4, 1, 17], seed=seed)
    data["gt_boxes"][3] = torch.tensor([[100.0, 100.0, 103.0, 102.0]])       # few candidates
    priors, cls, reg = _yolox_inputs(core, data, seed, untrained)
    shapes = [m["img_shape"] for m in data["metas"]]
    own = [core.targets(p, b, lb, s, cls_scores=c, bbox_preds=r)
           for p, b, lb, s, c, r in zip(priors, data["gt_boxes"], data["gt_labels"], shapes, cls, reg)]
    calls = _spy(core.assigner)
    batched = core.batch_targets(priors, data["gt_boxes"], data["gt_labels"], shapes, None, cls, reg)
    ref = _assert_same(core, own, batched)
    assert int(ref.sampling_result.pos_inds.numel()) > 0
    assert len(calls) < 5, len(calls)                                       # the batch pass did most images


def _sim_ota_batch(cases):
    """One batch of tests/engine/test_sim_ota_fast.py's cases (same points): each image's own
    ``assign`` and the batch's ``assign_batch``."""
    from detengine.assigners import SimOTAAssigner
    from detengine.heads.base import PaddedGTs
    priors = cases[0][0]
    assigner = SimOTAAssigner()
    gts = PaddedGTs.of([c[1] for c in cases], [c[2] for c in cases], priors)
    scores = torch.stack([c[3] for c in cases])
    boxes = torch.stack([c[4] for c in cases])
    inside = torch.ones(scores.shape[:2], dtype=torch.bool)
    calls = _spy(assigner)
    gt_inds, ious = assigner.assign_batch(priors, inside, gts, pred_scores=scores, pred_boxes=boxes)
    alone = len(calls)
    del assigner.assign
    for b, (_, g, lb, sc, bx) in enumerate(cases):
        want = assigner.assign(priors, g, lb, pred_scores=sc, pred_boxes=bx)
        assert torch.equal(gt_inds[b], want.gt_inds), b
        assert torch.equal(ious[b], torch.where(want.gt_inds > 0, want.max_overlaps, 0)), b
    return alone


@pytest.mark.parametrize("kinds", [("trained", "random", "near_init"), ("init", "untrained", "quantized")])
def test_sim_ota_of_a_batch_on_the_guards_cases(kinds):
    """SimOTA's batched pass on the cases that pin the per-image guard to mmdetection's exact sums
    (test_sim_ota_fast.py): every kind of head output, tiny GTs, duplicate GTs of other classes, one
    and 60 GTs: each image as its own ``assign``; the trained kinds mostly in the batch's pass."""
    from tests.engine.test_sim_ota_fast import case
    cases = []
    for i, kind in enumerate(kinds):
        cases.append(case(60 + i, kind, 12))
        cases.append(case(70 + i, kind, 30, min_frac=0.003, max_frac=0.03))
        priors, gts, labels, scores, boxes = case(80 + i, kind, 6)
        cases.append((priors, torch.cat([gts, gts]), torch.cat([labels, (labels + 1) % 80]), scores, boxes))
    cases.append(case(90, kinds[0], 1))
    cases.append(case(91, kinds[0], 60))
    alone = _sim_ota_batch(cases)
    if kinds[0] == "trained":
        assert alone <= len(cases) // 2, alone


def test_sim_ota_of_a_batch_settles_a_contested_point_on_mmdetections_sums():
    """test_sim_ota_fast.py's flipping case in a batch: two GTs on one box with other classes under the
    untrained head's equal scores; the fast sums tie where mmdetection's differ by an ulp (on the AMD
    machine this was written on, classes 24 and 0): a contested point the batch pass would give to the
    first GT goes to the image's own assignment and its exact sums."""
    from detengine.heads.yolox import offset_priors
    from tests.engine.test_sim_ota_fast import points_of, predictions
    points = points_of(64)
    scores, boxes = predictions("init", points, torch.Generator())
    gts = torch.tensor([[20.3, 20.1, 37.7, 29.9]] * 2)
    cases = [(offset_priors(points), gts, torch.tensor([24, b]), scores, boxes) for b in range(80) if b != 24]
    _sim_ota_batch(cases)


def test_split_targets_give_each_image_its_positives():
    """A head whose own ``loss_image`` has no batched form (a subclass overriding it) gets the batch's
    targets split per image: each image's positives as its own targets give them."""
    from detengine.heads.fcos import FCOSHeadCore

    class ReweightedFCOS(FCOSHeadCore):
        def loss_image(self, *args):
            return FCOSHeadCore.loss_image(self, *args)
    core = _core("fcos_r50_fpn_coco")
    core.__class__ = ReweightedFCOS
    core, own, batched = _both(core, _batch(256, [5, 0, 3], awkward=False))
    joined, parts = batched
    priors, _, cls, reg = _inputs(core, _batch(256, [5, 0, 3], awkward=False))
    avg = core.reduce_avg_factor(parts)
    assert core.batch_loss_terms(cls, reg, priors, joined, avg) is None
    for got, want, c, r, p in zip(core.split_targets(joined, 3), own, cls, reg, priors):
        assert torch.equal(got.sampling_result.pos_inds, want.sampling_result.pos_inds)
        a = core.loss_image(c, r, p, got, avg).terms
        b = core.loss_image(c, r, p, want, avg).terms
        for k in b:
            assert_ulp_close(a[k], b[k], max_ulp=4, what=k)


def _dsl_images_on_their_own(shape, boxes, labels, seed: int) -> int:
    """RTMDet's targets of two images (random predictions) by the batch's pass equal each image's own;
    returns how many images the pass left to the per-image assignment."""
    core = _core("rtmdet_tiny_coco")
    priors = [core.priors(shape)] * 2
    boxes, labels = [torch.tensor(b) for b in boxes], [torch.tensor(lb) for lb in labels]
    g = torch.Generator().manual_seed(seed)
    a = len(priors[0])
    cls = torch.randn(2, a, core.cls_channels(), generator=g)
    reg = torch.rand(2, a, 4, generator=g) * 20
    own = [core.targets(p, b, lb, shape, cls_scores=c, bbox_preds=r)
           for p, b, lb, c, r in zip(priors, boxes, labels, cls, reg)]
    calls = _spy(core.assigner)
    _assert_same(core, own, core.batch_targets(priors, boxes, labels, [shape] * 2, None, cls, reg))
    return len(calls)


def test_dynamic_soft_label_with_fewer_candidates_than_topk_keeps_the_images_own():
    """An image whose GTs hold fewer candidates than ``topk`` (13): its own k sums fewer IoUs than the
    batch's padded top-k, in another order, and ``int()`` of the two may differ: it is assigned on its
    own; the other image in the batch's pass."""
    assert _dsl_images_on_their_own((256, 256), [[[100.0, 100.0, 117.0, 113.0]], [[40.0, 30.0, 200.0, 180.0]]],
                                    [[3], [5]], seed=2) == 1


def test_dynamic_soft_label_gt_whose_costs_are_all_inf_keeps_the_images_own():
    """A tiny GT in the far corner of a 640 image, with the image's candidates (the points inside two
    small GTs, none a stride-32 point) 49-98 strides away: its soft centre prior ``10^(d - 3)``
    overflows float32, so every cost of that GT is inf, and which point ``torch.topk`` gives it
    among the tied infs is its own rule: the image is assigned on its own, the other one in the
    batch's pass (its k-th and (k+1)-th costs tie at inf; the image has 20 candidates, more than
    ``topk``)."""
    boxes = [[[33.0, 33.0, 63.0, 63.0], [65.0, 33.0, 95.0, 63.0], [601.0, 601.0, 607.0, 607.0]],
             [[60.0, 50.0, 170.0, 190.0]]]
    assert _dsl_images_on_their_own((640, 640), boxes, [[3, 4, 5], [5]], seed=4) == 1


def test_atss_with_a_level_one_prior_short_of_k_keeps_the_images_own():
    """A level of exactly k (9) priors with one left out (outside the image's border): that image's own
    top-k takes the 8 left, the batch's top-k would take the one outside too: assigned on its own."""
    from detengine.assigners import ATSSAssigner
    from detengine.heads.base import PaddedGTs

    def grid(n, stride):
        c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        half = stride * 2
        return torch.stack([cx - half, cy - half, cx + half, cy + half], -1).reshape(-1, 4)
    priors = torch.cat([grid(6, 16.0), grid(3, 32.0)])                  # 36 + 9 priors, k = 9
    counts = [36, 9]
    boxes = [torch.tensor([[20.3, 24.9, 70.1, 61.7]]), torch.tensor([[30.6, 10.2, 90.9, 80.4]])]   # no tied distance
    labels = [torch.tensor([1]), torch.tensor([2])]
    inside = torch.ones(2, 45, dtype=torch.bool)
    inside[0, 40] = False
    assigner = ATSSAssigner(topk=9)
    calls = _spy(assigner)
    got = assigner.assign_batch(priors, inside, PaddedGTs.of(boxes, labels, priors), num_level_priors=counts)
    assert len(calls) == 1
    del assigner.assign
    for b in range(2):
        keep = inside[b]
        levels = [int(v.sum()) for v in keep.split(counts)]
        want = torch.full((45,), -1, dtype=torch.long)
        want[keep] = assigner.assign(priors[keep], boxes[b], labels[b], num_level_priors=levels).gt_inds
        assert torch.equal(got[b], want), b


def test_sim_ota_with_fewer_candidates_than_candidate_topk_keeps_the_images_own():
    """An image with fewer candidates than ``candidate_topk``: its own k sums fewer IoUs than the batch's
    padded top-k (``int()`` of sums of other lengths may differ): assigned on its own."""
    from detengine.assigners import SimOTAAssigner
    from detengine.heads.base import PaddedGTs
    from tests.engine.test_sim_ota_fast import case
    priors, gts, labels, scores, boxes = case(95, "trained", 5)
    far = torch.tensor([[1.0, 1.0, 4.0, 4.0]])                     # a corner box: 22 candidates
    assigner = SimOTAAssigner(candidate_topk=30)
    calls = _spy(assigner)
    got, _ = assigner.assign_batch(priors, torch.ones(2, len(priors), dtype=torch.bool),
                                   PaddedGTs.of([far, gts], [labels[:1], labels], priors),
                                   pred_scores=torch.stack([scores, scores]), pred_boxes=torch.stack([boxes, boxes]))
    assert len(calls) == 1
    del assigner.assign
    for b, (g, lb) in enumerate([(far, labels[:1]), (gts, labels)]):
        assert torch.equal(got[b], assigner.assign(priors, g, lb, pred_scores=scores, pred_boxes=boxes).gt_inds)


def test_atss_levels_side_by_side_give_each_levels_own_top_k():
    """The batch's candidates come from every level at once (distances padded with inf to the largest
    level, one top-(k + 1)): against each image's own per-level top-k on levels of 0, 1, 5, 9, 10 and 50
    priors, the same candidates in the same order where no distance ties; an image with a level of fewer
    than k finite distances, or a tie at the k-th place, is flagged for its own assignment."""
    from detengine.assigners import ATSSAssigner
    counts = [50, 0, 10, 9, 5, 1]
    a, g, b = sum(counts), 4, 4
    gen = torch.Generator().manual_seed(21)
    distances = torch.rand(b, a, g, generator=gen) * 100
    overlaps = torch.rand(b, a, g, generator=gen)
    distances[1, 60:66, 2] = torch.inf                  # image 1: its 9-prior level has 3 finite distances left
    distances[2, :50, 1] = torch.arange(50.0).flip(0)   # image 2: no tie, another order
    distances[3, 20, 0] = distances[3, :50, 0].sort().values[8]    # image 3: a tie at the 9th place
    mask = torch.ones(b, g, dtype=torch.bool)
    assigner = ATSSAssigner(topk=9)
    cands, own = assigner._batch_candidates(distances, overlaps, mask, counts)
    assert own.tolist() == [False, True, False, True]
    for i in (0, 2):
        assert torch.equal(cands[i], assigner._candidates(distances[i], counts)), i
    mask[1, 2] = mask[3, 0] = False                        # the ties on padding GTs do not count
    assert not assigner._batch_candidates(distances, overlaps, mask, counts)[1].any()
