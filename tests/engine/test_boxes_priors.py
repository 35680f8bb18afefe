"""Boxes and priors: hand-computed numbers, properties, empty inputs."""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import generalized_box_iou as tv_giou

from detengine.boxes import (
    aligned_giou,
    aligned_iou,
    bbox_overlaps,
    box_giou,
    box_iof,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    valid_boxes_mask,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from detengine.priors import (
    D2LPriorGenerator,
    LegacySSDAnchorGenerator,
    MlvlPointGenerator,
    SSDAnchorGenerator,
    multibox_prior,
)

SSD300 = dict(strides=[8, 16, 32, 64, 100, 300], ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
              basesize_ratio_range=(0.15, 0.9), scale_major=False)
SSD300_SIZES = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
MIN_SIZES = [21, 45, 99, 153, 207, 261]
MAX_SIZES = [45, 99, 153, 207, 261, 315]


def boxes_strategy(n_min=0, n_max=6):
    coord = st.floats(0, 200, allow_nan=False, width=32)
    size = st.floats(0.5, 150, allow_nan=False, width=32)
    box = st.tuples(coord, coord, size, size).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])
    return st.lists(box, min_size=n_min, max_size=n_max).map(lambda b: torch.tensor(b, dtype=torch.float32).reshape(-1, 4))


def test_conversions_round_trip_by_hand():
    b = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert xyxy_to_xywh(b).tolist() == [[10, 20, 40, 60]]
    assert xyxy_to_cxcywh(b).tolist() == [[30, 50, 40, 60]]
    assert torch.equal(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    assert torch.equal(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    assert clip_boxes(torch.tensor([[-5.0, -1, 120, 90]]), (80, 100)).tolist() == [[0, 0, 100, 80]]
    assert valid_boxes_mask(torch.tensor([[0.0, 0, 0, 5], [0, 0, 2, 2], [0, 0, float("nan"), 1]])).tolist() == [
        False, True, False]


def test_iou_iof_giou_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20.0, 20, 30, 30]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150, 0.0]]))
    assert torch.allclose(box_iof(a, b), torch.tensor([[0.5, 0.0]]))
    # disjoint: enclosure 30x30 = 900, union 200 -> 0 - 700/900
    assert torch.allclose(box_giou(a, b)[0, 1], torch.tensor(-700 / 900))


def test_empty_inputs_give_shaped_empties():
    e, b = torch.zeros(0, 4), torch.tensor([[0.0, 0, 1, 1]])
    assert box_iou(e, b).shape == (0, 1) and box_iou(b, e).shape == (1, 0)
    assert aligned_iou(e, e).shape == (0,)
    assert SSDAnchorGenerator(**SSD300).grid_priors([(0, 0)] * 6).tensor.shape == (0, 4)


@settings(max_examples=60, deadline=None)
@given(boxes_strategy(1), boxes_strategy(1))
def test_iou_symmetric_bounded_and_matches_torchvision(a, b):
    ab, ba = box_iou(a, b), box_iou(b, a)
    assert torch.equal(ab, ba.t())
    assert (ab >= 0).all() and (ab <= 1 + 1e-6).all()
    torch.testing.assert_close(ab, tv_box_iou(a, b), rtol=1e-5, atol=1e-6)
    g = box_giou(a, b)
    assert (g >= -1 - 1e-6).all() and (g <= ab + 1e-6).all()
    torch.testing.assert_close(g, tv_giou(a, b), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(aligned_giou(a[:1], b[:1]), g[:1, 0])


def test_degenerate_boxes_never_nan():
    pts = torch.tensor([[5.0, 5, 5, 5], [5.0, 5, 5, 5]])
    assert not torch.isnan(bbox_overlaps(pts, pts)).any()
    assert not torch.isnan(aligned_giou(pts, pts)).any()


def _hand_ssd_first_anchor(level, legacy):
    s = SSD300["strides"][level]
    m = MIN_SIZES[level]
    if legacy:
        c = (s - 1) / 2
        lo, hi = c - 0.5 * (m - 1), c + 0.5 * (m - 1)
        return [float(round(lo)), float(round(lo)), float(round(hi)), float(round(hi))]
    c = s / 2
    return [c - m / 2, c - m / 2, c + m / 2, c + m / 2]


def test_ssd300_coco_counts_sizes_and_first_anchors_by_hand():
    gen = SSDAnchorGenerator(**SSD300)
    priors = gen.grid_priors(SSD300_SIZES)
    assert len(priors) == 8732
    assert priors.num_per_level == [5776, 2166, 600, 150, 36, 4]
    assert gen.min_sizes == MIN_SIZES and gen.max_sizes == MAX_SIZES
    legacy = LegacySSDAnchorGenerator(**SSD300).grid_priors(SSD300_SIZES)
    for level in range(6):
        first = priors.tensor[priors.level_slice(level).start]
        assert first.tolist() == _hand_ssd_first_anchor(level, legacy=False)
        assert legacy.tensor[legacy.level_slice(level).start].tolist() == _hand_ssd_first_anchor(level, legacy=True)
        # second anchor: the sqrt(min * max) square
        second = priors.tensor[priors.level_slice(level).start + 1]
        side = math.sqrt(MIN_SIZES[level] * MAX_SIZES[level])
        assert math.isclose(float(second[2] - second[0]), side, rel_tol=1e-6)


def test_ssd_ratios_inside_a_cell_are_h_over_w():
    priors = SSDAnchorGenerator(**SSD300).grid_priors(SSD300_SIZES)
    cell = priors.tensor[priors.cell_indices(1, 0, 0)]  # [min, sqrt, 1/2, 2, 1/3, 3]
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    torch.testing.assert_close(h / w, torch.tensor([1, 1, 0.5, 2, 1 / 3, 3.0]))


def test_cell_lookup_round_trips():
    priors = SSDAnchorGenerator(**SSD300).grid_priors(SSD300_SIZES)
    idx = priors.cell_indices(0, 7, 11)
    assert priors.row[idx].unique().tolist() == [7] and priors.col[idx].unique().tolist() == [11]
    assert priors.base_index[idx].tolist() == [0, 1, 2, 3]
    assert priors.cell_at(0, 11 * 8 + 4, 7 * 8 + 4) == (7, 11)


def test_d2l_tinyssd_has_5444_anchors_and_d2l_values():
    gen = D2LPriorGenerator(sizes=[[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]],
                            ratios=[[1, 2, 0.5]] * 5, image_size=(256, 256))
    priors = gen.grid_priors([(32, 32), (16, 16), (8, 8), (4, 4), (1, 1)])
    assert len(priors) == 5444
    c = 0.5 / 32
    torch.testing.assert_close(priors.normalized[0], torch.tensor([c - 0.1, c - 0.1, c + 0.1, c + 0.1]))
    torch.testing.assert_close(priors.tensor[0], priors.normalized[0] * 256)
    # d2l's ratio is w / h: anchor 2 (size 0.2, ratio 2) is wider than tall
    w, h = priors.normalized[2, 2] - priors.normalized[2, 0], priors.normalized[2, 3] - priors.normalized[2, 1]
    torch.testing.assert_close(w / h, torch.tensor(2.0))
    assert multibox_prior((4, 4), [0.2], [1, 2]).shape == (32, 4)


def test_points_with_stride_and_valid_flags():
    p = MlvlPointGenerator(strides=[8, 16], offset=0).grid_priors([(2, 3), (1, 2)], pad_shape=(8, 9))
    assert p.tensor[:3].tolist() == [[0, 0, 8, 8], [8, 0, 8, 8], [16, 0, 8, 8]]
    # pad (8, 9): ceil(8/8)=1 valid row, ceil(9/8)=2 valid columns on level 0
    assert p.valid[:6].tolist() == [True, True, False, False, False, False]
    assert p.is_point and p.boxes[0].tolist() == [-4, -4, 4, 4]


def test_aligned_overlaps_equal_the_full_forms_diagonal_with_gradients():
    """The aligned form works on (..., 2) corners (x and y in one operation, half the launches with a
    gradient); every mode's values and gradients equal, bit for bit, the diagonal of the per-coordinate
    (N, N) form, on pairs with the ties where max/min and clamp pick a side: identical boxes, shared
    corners, touching edges, zero width, disjoint pairs, and with leading batch dimensions."""
    g = torch.Generator().manual_seed(11)
    p = torch.rand(60, 2, generator=g) * 100
    b1 = torch.cat([p, p + torch.rand(60, 2, generator=g) * 50 + 1], 1)
    b2 = torch.cat([p + torch.randint(-5, 5, (60, 2), generator=g).float(), p + torch.rand(60, 2, generator=g) * 50], 1)
    b2[:10] = b1[:10]
    b2[10:20, 0] = b1[10:20, 2]
    b2[20:30, :2] = b1[20:30, :2]
    b1[30:35, 2] = b1[30:35, 0]
    b2[35:40] += 300
    w = torch.rand(60, generator=g)
    for mode in ("iou", "iof", "giou"):
        x1, x2 = b1.clone().requires_grad_(), b1.clone().requires_grad_()
        aligned = bbox_overlaps(x1, b2, mode=mode, is_aligned=True)
        full = bbox_overlaps(x2, b2, mode=mode).diagonal()
        assert torch.equal(aligned, full), mode
        (ga,) = torch.autograd.grad((aligned * w).sum(), x1)
        (gf,) = torch.autograd.grad((full * w).sum(), x2)
        assert torch.equal(ga, gf), mode
        batched = bbox_overlaps(b1.view(3, 20, 4), b2.view(3, 20, 4), mode=mode, is_aligned=True)
        assert torch.equal(batched.reshape(-1), aligned.detach()), mode
