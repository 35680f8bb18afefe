"""The fast NMS record equals the old one exactly.

``oracle_*`` below is the record as ``detengine/postprocess.py`` computed it at commit 8347543
(before the per-class NMS and the suppressor rounds), copied verbatim apart from the names: every
(kept, suppressed) pair of a class enumerated, IoU by ``bbox_overlaps(is_aligned=True)``, the
first hit in score order. The new record must equal it exactly: indices, stages and counts
exactly, and the float IoU bit for bit (a budget of 0 ULP: the new code runs the same float
operations in the same order on the same operands).
"""
from __future__ import annotations

import time

import pytest
import torch
from torchvision.ops import nms

from detengine.boxes import bbox_overlaps
from detengine.launches import gpu_code_paths
from detengine.postprocess import PostprocessResult, Stage, _nms_stages, batched_nms_mmcv, multiclass_nms, suppressors

IOU_ULP_BUDGET = 0  # suppressed_iou must be bitwise equal


# ------------------------------------------------------------------ the oracle (old algorithm)

def oracle_suppressors(boxes, scores, labels, keep, iou_threshold, class_agnostic=False):
    n = boxes.shape[0]
    by = torch.full((n,), -1, dtype=torch.long, device=boxes.device)
    iou_out = boxes.new_zeros(n)
    gone = torch.ones(n, dtype=torch.bool, device=boxes.device)
    gone[keep] = False
    sup = gone.nonzero().view(-1)
    if sup.numel() == 0 or keep.numel() == 0:
        return by, iou_out
    group = torch.zeros_like(labels) if class_agnostic else labels
    k = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    k = k[torch.argsort(group[k], stable=True)]  # by class, then score (descending)
    num_groups = int(group.max()) + 1
    count = torch.bincount(group[k], minlength=num_groups)
    first_of = torch.cumsum(count, 0) - count
    per_sup = count[group[sup]]  # kept boxes of each suppressed box's class
    pair_sup = torch.repeat_interleave(torch.arange(sup.numel(), device=boxes.device), per_sup)
    base = torch.repeat_interleave(torch.cumsum(per_sup, 0) - per_sup, per_sup)
    pos = first_of[group[sup]][pair_sup] + torch.arange(pair_sup.numel(), device=boxes.device) - base
    kb, sb = k[pos], sup[pair_sup]
    ious = bbox_overlaps(boxes[kb], boxes[sb], is_aligned=True)
    over = (ious > iou_threshold) & (scores[kb] >= scores[sb])
    best = torch.full((sup.numel(),), pair_sup.numel(), dtype=torch.long, device=boxes.device)
    pair_ids = torch.arange(pair_sup.numel(), device=boxes.device)
    best.scatter_reduce_(0, pair_sup[over], pair_ids[over], reduce="amin")  # first in score order
    found = best < pair_sup.numel()
    by[sup[found]] = kb[best[found]]
    iou_out[sup[found]] = ious[best[found]]
    return by, iou_out


def oracle_offset_boxes(boxes, labels):
    if boxes.numel() == 0:
        return boxes.clone()
    offsets = labels.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return boxes + offsets[:, None]


def oracle_batched_nms_mmcv(boxes, scores, labels, iou_threshold, split_thr=10000):
    shifted = oracle_offset_boxes(boxes, labels)
    n = boxes.shape[0]
    if n < split_thr:
        keep = nms(shifted, scores, iou_threshold)
        return keep, shifted, bool(n and boxes.min() < -1)
    kept = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    for label in torch.unique(labels):
        idx = (labels == label).nonzero().view(-1)
        kept[idx[nms(shifted[idx], scores[idx], iou_threshold)]] = True
    keep = kept.nonzero().view(-1)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)], shifted, False


def _oracle_positions(alive, keep):
    lookup = torch.full((int(alive.max()) + 1 if alive.numel() else 1,), -1, dtype=torch.long, device=alive.device)
    lookup[alive] = torch.arange(alive.numel(), device=alive.device)
    return lookup[keep]


def oracle_nms_stages(boxes, scores, labels, prior_idx, min_bbox_size, iou_threshold, max_per_img, *,
                      class_agnostic, counts, nms_first_keep=None):
    n = boxes.shape[0]
    stage = torch.full((n,), Stage.KEPT, dtype=torch.uint8, device=boxes.device)
    alive = torch.arange(n, device=boxes.device)
    if min_bbox_size is not None and min_bbox_size >= 0:
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        big = (w > min_bbox_size) & (h > min_bbox_size)
        stage[~big] = Stage.TOO_SMALL
        alive = alive[big]
    counts["min_bbox_size"] = int(alive.numel())
    nms_boxes = boxes[alive]
    if nms_first_keep is not None:
        keep = nms_first_keep
    elif alive.numel() == 0:
        keep = alive
    elif class_agnostic:
        keep = alive[nms(nms_boxes, scores[alive], iou_threshold)]
    else:
        local, nms_boxes, cross_class = oracle_batched_nms_mmcv(nms_boxes, scores[alive], labels[alive],
                                                                iou_threshold)
        keep, class_agnostic = alive[local], cross_class
    by_local, iou_local = oracle_suppressors(nms_boxes, scores[alive], labels[alive],
                                             _oracle_positions(alive, keep), iou_threshold, class_agnostic)
    suppressed_by = torch.full((n,), -1, dtype=torch.long, device=boxes.device)
    suppressed_iou = boxes.new_zeros(n)
    hit = by_local >= 0
    suppressed_by[alive[hit]] = alive[by_local[hit]]
    suppressed_iou[alive[hit]] = iou_local[hit]
    dropped = torch.ones(n, dtype=torch.bool, device=boxes.device)
    dropped[keep] = False
    stage[dropped & (stage == Stage.KEPT)] = Stage.SUPPRESSED
    counts["nms"] = int(keep.numel())
    if max_per_img is not None and max_per_img > 0:
        stage[keep[max_per_img:]] = Stage.OVER_MAX_PER_IMG
        keep = keep[:max_per_img]
    counts["max_per_img"] = int(keep.numel())
    return PostprocessResult(boxes[keep], scores[keep], labels[keep], keep, prior_idx, labels, scores, boxes,
                             stage, suppressed_by, suppressed_iou, torch.zeros(0, dtype=torch.uint8), counts)


# ------------------------------------------------------------------------------- comparisons

def ulp_distance(a, b):
    """Per element: how many float32 steps apart (0 for bitwise-equal, including -0 vs 0 = 1)."""
    ia = a.contiguous().view(torch.int32).long()
    ib = b.contiguous().view(torch.int32).long()
    ia = torch.where(ia < 0, -(ia & 0x7FFFFFFF), ia)  # sign-magnitude -> ordered integers
    ib = torch.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return (ia - ib).abs()


def record_differences(new, old) -> list[str]:
    """What differs between two PostprocessResults (empty: equal). Integers exactly, floats within
    ``IOU_ULP_BUDGET`` ULP (0: bitwise)."""
    out = []
    for name in ("kept", "cand_prior", "cand_label", "cand_stage", "suppressed_by", "labels"):
        a, b = getattr(new, name), getattr(old, name)
        if a.dtype != b.dtype or not torch.equal(a, b):
            out.append(name)
    for name in ("boxes", "scores", "cand_score", "cand_box", "suppressed_iou"):
        a, b = getattr(new, name), getattr(old, name)
        if a.shape != b.shape or a.dtype != b.dtype or (a.numel() and int(ulp_distance(a, b).max()) > IOU_ULP_BUDGET):
            out.append(name)
    if new.counts != old.counts:
        out.append("counts")
    return out


def suppressor_differences(new, old) -> list[str]:
    (by_n, iou_n), (by_o, iou_o) = new, old
    out = []
    if not torch.equal(by_n, by_o):
        out.append(f"suppressed_by at {(by_n != by_o).nonzero().view(-1)[:5].tolist()}")
    if iou_n.shape != iou_o.shape or (iou_n.numel() and int(ulp_distance(iou_n, iou_o).max()) > IOU_ULP_BUDGET):
        out.append("iou")
    return out


def run_both(boxes, scores, labels, iou_threshold=0.5, min_bbox_size=0, max_per_img=100):
    n = boxes.shape[0]
    args = (boxes, scores, labels, torch.arange(n), min_bbox_size, iou_threshold, max_per_img)
    new = _nms_stages(*args, class_agnostic=False, counts={})
    old = oracle_nms_stages(*args, class_agnostic=False, counts={})
    return new, old


def assert_same(boxes, scores, labels, iou_threshold=0.5, **kw):
    with gpu_code_paths():          # a GPU's path: one NMS over all classes below split_thr (mmcv's own)
        gpu_new, old = run_both(boxes, scores, labels, iou_threshold, **kw)
        assert record_differences(gpu_new, old) == []
        keep_gpu, shifted_gpu, cross_gpu = batched_nms_mmcv(boxes, scores, labels, iou_threshold)
    new, old = run_both(boxes, scores, labels, iou_threshold, **kw)
    assert record_differences(new, old) == []
    keep_new, shifted_new, cross_new = batched_nms_mmcv(boxes, scores, labels, iou_threshold)
    assert torch.equal(keep_gpu, keep_new) and torch.equal(shifted_gpu, shifted_new) and cross_gpu == cross_new
    keep_old, shifted_old, cross_old = oracle_batched_nms_mmcv(boxes, scores, labels, iou_threshold)
    assert torch.equal(keep_new, keep_old) and torch.equal(shifted_new, shifted_old) and cross_new == cross_old
    for agnostic in (False, True) if boxes.shape[0] <= 4000 else (False,):  # the oracle's agnostic pairs: K x S
        assert suppressor_differences(
            suppressors(shifted_new, scores, labels, keep_new, iou_threshold, agnostic),
            oracle_suppressors(shifted_old, scores, labels, keep_old, iou_threshold, agnostic)) == []
    return new


# ------------------------------------------------------------------------------------ cases

def clustered(n, num_classes=80, num_objects=12, size=(800, 1333), seed=0, thr=0.05, scattered=0.2):
    """RetinaNet-like candidates: 80% around a few objects (jittered centre and scale), 20%
    (``scattered``) anywhere; 30% of the clustered ones carry the object's class with a high score, the rest a
    random class with a low sigmoid score just over ``thr``."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    osz = torch.exp(torch.rand(num_objects, 2, generator=g) * 2.6 + 3.4)
    oc = torch.rand(num_objects, 2, generator=g) * torch.tensor([w, h])
    ocls = torch.randint(0, num_classes, (num_objects,), generator=g)
    n_obj = int(n * (1 - scattered))
    which = torch.randint(0, num_objects, (n_obj,), generator=g)
    c = oc[which] + torch.randn(n_obj, 2, generator=g) * osz[which] * 0.15
    s = osz[which] * torch.exp(torch.randn(n_obj, 2, generator=g) * 0.2)
    cb = torch.rand(n - n_obj, 2, generator=g) * torch.tensor([w, h])
    sb = torch.exp(torch.rand(n - n_obj, 2, generator=g) * 3.0 + 3.0)
    centres, sizes = torch.cat([c, cb]), torch.cat([s, sb])
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    own = torch.rand(n_obj, generator=g) < 0.3
    labels = torch.randint(0, num_classes, (n,), generator=g)
    labels[:n_obj][own] = ocls[which][own]
    scores = thr - torch.log(torch.rand(n, generator=g)) / 25
    scores[:n_obj][own] = thr + (1 - thr) * torch.rand(int(own.sum()), generator=g) ** 2
    perm = torch.randperm(n, generator=g)
    return boxes[perm].contiguous(), scores.clamp(max=1.0)[perm].contiguous(), labels[perm].contiguous()


def uniform(n, num_classes=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g) * 600
    sizes = 8 + torch.rand(n, 2, generator=g) * 120
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1).clamp(0, 640)
    return boxes, torch.rand(n, generator=g), torch.randint(0, num_classes, (n,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [0, 1, 2, 50, 3500])
def test_random_clustered_candidates(n, seed):
    new = assert_same(*clustered(n, seed=seed, num_classes=80 if n > 1000 else 4))
    if n >= 50:
        assert (new.cand_stage == Stage.SUPPRESSED).any() and (new.suppressed_by >= 0).any()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n", [50, 3500])
def test_random_uniform_candidates(n, seed):
    for thr in (0.3, 0.5, 0.7):
        assert_same(*uniform(n, seed=seed), iou_threshold=thr)


def test_20k_candidates_split_branch_fast_enough():
    """20,000 candidates: mmcv's split_thr branch (per class). Both sides under 10 s."""
    t0 = time.perf_counter()
    boxes, scores, labels = clustered(20_000, seed=7)
    new = assert_same(boxes, scores, labels)
    assert new.counts["min_bbox_size"] >= 10_000 and int((new.suppressed_by >= 0).sum()) > 1000
    assert time.perf_counter() - t0 < 10


def test_score_ties_and_identical_boxes():
    boxes, scores, labels = clustered(3500, seed=3)
    scores = (scores * 20).round() / 20  # few distinct scores: ties everywhere
    boxes[1::7] = boxes[0::7][: boxes[1::7].shape[0]]  # identical boxes ...
    labels[1::7] = labels[0::7][: labels[1::7].shape[0]]  # ... of the same class
    scores[2::11] = scores[3::11][: scores[2::11].shape[0]]
    new = assert_same(boxes, scores, labels)
    tied = (new.suppressed_by >= 0) & (new.cand_score == new.cand_score[new.suppressed_by.clamp(min=0)])
    assert tied.any()  # a suppressor with the same score as the box it suppressed
    # all scores equal, all boxes identical, one class: the first index keeps, it suppresses all
    b = torch.tensor([[10.0, 10, 50, 50]]).repeat(40, 1)
    r = assert_same(b, torch.full((40,), 0.5), torch.zeros(40, dtype=torch.long))
    assert r.kept.tolist() == [0] and r.suppressed_by[1:].eq(0).all()


def test_zero_area_and_inverted_boxes():
    boxes, scores, labels = clustered(3500, seed=4)
    boxes[5::13, 2:] = boxes[5::13, :2]  # zero area
    boxes[6::17, 2] = boxes[6::17, 0]  # zero width
    boxes[7::19] = boxes[7::19][:, [2, 3, 0, 1]]  # inverted (x2 < x1)
    for min_size in (0, None):  # with the size filter, and without (zero-area boxes reach NMS)
        assert_same(boxes, scores, labels, min_bbox_size=min_size)


@pytest.mark.parametrize("n", [50, 3500])
def test_negative_coordinates_below_minus_one(n):
    """Coordinates below -1: the class offset no longer separates the classes in the single
    pass, which then suppresses across classes; the record is class-agnostic (as before)."""
    boxes, scores, labels = clustered(n, seed=5, num_classes=3)
    boxes = boxes / 40 - 12  # coordinates in about [-12, 21]
    # every fifth box: a copy of its neighbour one class up, moved left by max + 1, so that the
    # class offset puts it back onto the neighbour
    labels[1::5] = labels[0::5][: labels[1::5].shape[0]] + 1
    boxes[1::5] = boxes[0::5][: boxes[1::5].shape[0]] - (boxes.max() + 1)
    new = assert_same(boxes, scores, labels, min_bbox_size=None)
    by = new.suppressed_by
    assert (by >= 0).any() and (new.cand_label[by[by >= 0]] != new.cand_label[by >= 0]).any()  # cross-class


@pytest.mark.parametrize("classes", ["1000 classes", "one class: 0", "one class: 79"])
def test_many_classes_and_one_class(classes):
    boxes, scores, labels = clustered(3500, seed=6, num_classes=1000)
    if classes.startswith("one"):
        labels = torch.full_like(labels, int(classes.split()[-1]))
    assert_same(boxes, scores, labels)


def test_one_class_split_branch():
    boxes, scores, labels = clustered(10_500, seed=6, num_classes=1, scattered=0.0)
    new = assert_same(boxes, scores, labels)
    assert int((new.suppressed_by >= 0).sum()) > 5000


def test_iou_exactly_at_the_threshold():
    """IoU exactly 0.5 is not above 0.5: kept; a hair above: suppressed."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 5], [0.0, 0, 10, 5.0001], [100, 100, 110, 110]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.zeros(4, dtype=torch.long)
    assert bbox_overlaps(boxes[:1], boxes[1:2]).item() == 0.5
    new = assert_same(boxes, scores, labels)
    assert new.cand_stage.tolist() == [Stage.KEPT, Stage.KEPT, Stage.SUPPRESSED, Stage.KEPT]
    assert new.suppressed_by.tolist() == [-1, -1, 0, -1]
    # a whole grid of pairs at IoU exactly 0.5 among random candidates
    g = torch.Generator().manual_seed(8)
    base = torch.rand(300, 2, generator=g).mul(500).round()
    a = torch.cat([base, base + 16], 1)
    b = torch.cat([base, base + torch.tensor([16.0, 8.0])], 1)  # half of a: IoU exactly 0.5
    boxes = torch.cat([a, b, *clustered(1000, seed=8)[0:1]])
    scores = torch.cat([torch.full((300,), 0.9), torch.full((300,), 0.8), clustered(1000, seed=8)[1]])
    labels = torch.cat([torch.arange(300) % 5, torch.arange(300) % 5, clustered(1000, seed=8)[2] % 5])
    assert_same(boxes, scores, labels, iou_threshold=0.5)


def test_threshold_corner_cases_fall_back_to_the_single_pass():
    """Negative or zero threshold, and coordinates so large that the float32 offset lets two
    classes touch: still mmcv's single NMS."""
    boxes, scores, labels = clustered(300, seed=9, num_classes=5)
    for thr in (-0.1, 0.0, 1.0):
        assert_same(boxes, scores, labels, iou_threshold=thr)
    big = boxes * 2.0 ** 15  # max + 1 no longer exact in float32
    assert_same(big, scores, labels)


def test_class_agnostic_record_and_d2l_keep():
    """The class-agnostic record (d2l, cross-class corner case) on 3,500 boxes."""
    boxes, scores, labels = clustered(3500, seed=10)
    keep = nms(boxes, scores, 0.45)
    assert suppressor_differences(suppressors(boxes, scores, labels, keep, 0.45, class_agnostic=True),
                                  oracle_suppressors(boxes, scores, labels, keep, 0.45, class_agnostic=True)) == []
    # keep given in another order than by score (the record's rank among equal scores follows it)
    shuffled = keep[torch.randperm(keep.numel(), generator=torch.Generator().manual_seed(0))]
    scores = (scores * 10).round() / 10
    assert suppressor_differences(suppressors(boxes, scores, labels, shuffled, 0.45),
                                  oracle_suppressors(boxes, scores, labels, shuffled, 0.45)) == []


def test_multiclass_nms_record_and_the_record_free_path():
    g = torch.Generator().manual_seed(11)
    n = 2000
    boxes, _, _ = clustered(n, seed=11)
    cls = torch.rand(n, 6, generator=g) ** 4
    dets, labels, inds, rec = multiclass_nms(boxes, cls, 0.05, 0.5, max_num=100)
    dets2, labels2, inds2, bare = multiclass_nms(boxes, cls, 0.05, 0.5, max_num=100, record=False)
    assert torch.equal(dets, dets2) and torch.equal(labels, labels2) and torch.equal(inds, inds2)
    assert torch.equal(rec.cand_stage, bare.cand_stage) and rec.counts == bare.counts
    assert (bare.suppressed_by == -1).all() and (bare.suppressed_iou == 0).all()
    assert (rec.suppressed_by >= 0).any()
    old = oracle_nms_stages(rec.cand_box, rec.cand_score, rec.cand_label, rec.cand_prior, None, 0.5, 100,
                            class_agnostic=False, counts=dict(raw=rec.counts["raw"], score_thr=rec.counts["score_thr"]))
    assert record_differences(rec, old) == []


# ------------------------------------------------------------------- the test can fail

def _mutated_suppressors(boxes, scores, labels, keep, iou_threshold, class_agnostic=False):
    """A wrong record: the LAST overlapping kept box (in score order) instead of the first."""
    by, iou = oracle_suppressors(boxes, scores, labels, keep, iou_threshold, class_agnostic)
    ious = bbox_overlaps(boxes, boxes)
    for s in (by >= 0).nonzero().view(-1).tolist():
        cands = [int(k) for k in keep if labels[k] == labels[s] and scores[k] >= scores[s]
                 and ious[k, s] > iou_threshold]
        by[s] = cands[-1]
        iou[s] = ious[cands[-1], s]
    return by, iou


def test_a_wrong_suppressor_or_iou_is_caught():
    """Hand-built: greedy NMS keeps 0 and 1 (IoU 6/14 between them) and suppresses 3, which
    overlaps both by 8/12; 0 scores higher, so 3's suppressor is 0. A record naming 1, or an IoU
    one ULP off, must not pass."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [4.0, 0, 14, 10], [50, 50, 60, 60], [2.0, 0, 12, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.zeros(4, dtype=torch.long)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [0, 1, 2]
    right = suppressors(boxes, scores, labels, keep, 0.5)
    assert right[0].tolist() == [-1, -1, -1, 0]
    wrong = _mutated_suppressors(boxes, scores, labels, keep, 0.5)
    assert wrong[0].tolist() == [-1, -1, -1, 1]
    assert suppressor_differences(wrong, oracle_suppressors(boxes, scores, labels, keep, 0.5)) != []
    assert suppressor_differences(right, oracle_suppressors(boxes, scores, labels, keep, 0.5)) == []
    off = right[1].clone()
    off[3] = torch.nextafter(off[3], torch.tensor(1.0))
    assert suppressor_differences((right[0], off), right) == ["iou"]
    # and through the whole stage record
    new, old = run_both(*clustered(500, seed=12))
    assert record_differences(new, old) == []
    bad = (new.suppressed_by >= 0).nonzero().view(-1)[0]
    new.suppressed_by[bad] = new.kept[-1] if new.kept[-1] != new.suppressed_by[bad] else new.kept[0]
    assert record_differences(new, old) == ["suppressed_by"]


def test_boxes_that_require_grad():
    """Given predictions may carry autograd: the record is computed without a graph."""
    boxes, scores, labels = clustered(500, seed=13, num_classes=4)
    new = _nms_stages(boxes.clone().requires_grad_(), scores, labels, torch.arange(500), 0, 0.5, 100,
                      class_agnostic=False, counts={})
    old = oracle_nms_stages(boxes, scores, labels, torch.arange(500), 0, 0.5, 100, class_agnostic=False, counts={})
    assert torch.equal(new.suppressed_by, old.suppressed_by)
    assert torch.equal(new.suppressed_iou, old.suppressed_iou)


def test_a_suppressed_box_whose_class_has_no_kept_box():
    """``suppressors`` takes any ``keep``: a box of a class without kept boxes has no suppressor."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [1.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    for labels, keep in ((torch.tensor([0, 1, 1]), torch.tensor([0])), (torch.tensor([0, 1, 0]), torch.tensor([0]))):
        got = suppressors(boxes, scores, labels, keep, 0.5)
        assert suppressor_differences(got, oracle_suppressors(boxes, scores, labels, keep, 0.5)) == []
    assert got[0].tolist() == [-1, -1, 0]


def test_the_record_on_a_gpu_takes_few_launches():
    """Off the CPU each tensor operation is a kernel launch (detengine/launches.py): the suppressor
    search runs in tiles of 4M pairs there, so 50,000 candidates take a few rounds of one tile
    each (953 operations a search in 64K-pair tiles, 148 now) and 3,500 one tile. Same record."""
    from detengine.launches import OpCounter
    bounds = {3500: (125, 40), 50_000: (400, 220)}      # NMS + record, record-free (116 / 30, 367 / 204)
    for n, (with_record, free) in bounds.items():
        boxes, scores, labels = clustered(n)
        args = (boxes, scores, labels, torch.arange(n), 0, 0.5, 100)
        with gpu_code_paths():
            results = []
            for record, bound in ((True, with_record), (False, free)):
                with OpCounter() as ops:
                    results.append(_nms_stages(*args, class_agnostic=False, counts={}, record=record))
                assert ops.kernels <= bound, (n, record, ops.kernels)
        assert record_differences(results[0], _nms_stages(*args, class_agnostic=False, counts={})) == []
