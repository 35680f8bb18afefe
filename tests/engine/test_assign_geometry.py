"""The Assignment view's rule geometry and numbers (detengine/assign_geometry.py): FCOS's
regress-range bounds cut a GT where ``max(l, t, r, b)`` crosses them and its centre regions are
``c +- radius x stride`` clipped to the box; SimOTA's centre squares; the numbers the "Why?" shows
are the ones the assigner compared (each point's positives agree with them)."""
from __future__ import annotations

import pytest
import torch

from detengine.assign_geometry import rule_numbers, rule_regions
from detengine.shipped import find_config
from detengine.trace import inspect

GTS = torch.tensor([[100.0, 100, 400, 420], [500, 500, 560, 540]])
LABELS = torch.tensor([0, 1])


def _fcos(center_sampling=False):
    return inspect((800, 800), GTS, LABELS, find_config("fcos_r50_fpn_coco"), "init", postprocess=False,
                   model_overrides={"bbox_head": {"center_sampling": center_sampling}})


def _inside(box, points):
    x1, y1, x2, y2 = box
    return (points[:, 0] >= x1) & (points[:, 0] <= x2) & (points[:, 1] >= y1) & (points[:, 1] <= y2)


def test_fcos_regress_range_bounds_hold_the_finer_levels_positives():
    """GT0 (300 x 320): max(l, t, r, b) runs 160..320, so only the 256 bound cuts it; P2's positives
    lie inside that rectangle, P3's outside; the 40-px GT1 lies within P0's range: nothing to draw."""
    t = _fcos()
    (region,) = rule_regions(t, 0)
    assert region.kind == "regress_range" and region.value == 256 and region.level == 2
    assert region.box == (144.0, 164.0, 356.0, 356.0) and "P2 in, P3 out" in region.label
    pos, level, centers = t.assign_result.gt_inds == 1, t.priors.level, t.priors.centers
    assert _inside(region.box, centers[pos & (level == 2)]).all()
    assert not _inside(region.box, centers[pos & (level == 3)]).any()
    assert (pos & (level == 3)).any() and rule_regions(t, 1) == [] and rule_regions(t, 5) == []


def test_fcos_centre_regions_of_the_levels_that_can_hold_the_gt():
    t = _fcos(center_sampling=True)
    centres = [r for r in rule_regions(t, 0) if r.kind == "centre"]
    assert [(r.level, r.value) for r in centres] == [(2, 48.0), (3, 96.0)]          # 1.5 x stride 32 / 64
    assert centres[0].box == (202.0, 212.0, 298.0, 308.0) and centres[1].box == (154.0, 164.0, 346.0, 356.0)
    pos = t.assign_result.gt_inds == 1
    for r in centres:
        assert _inside(r.box, t.priors.centers[pos & (t.priors.level == r.level)]).all()


@pytest.mark.parametrize("center_sampling", [False, True])
def test_fcos_numbers_say_what_decided_each_point(center_sampling):
    t = _fcos(center_sampling)
    ar = t.assign_result
    for prior in [int(i) for i in (ar.gt_inds == 1).nonzero().view(-1)[:5]]:
        lines = rule_numbers(t, prior)
        assert lines[0].startswith("FCOS: point") and "regress range" in lines[0]
        (gt0,) = [line for line in lines if line.strip().startswith("GT0:")]
        assert " within [" in gt0 and ("inside the centre region" in gt0) == center_sampling
    inside_p0 = ((ar.gt_inds == 0) & (t.priors.level == 0) & _inside((GTS[0] + torch.tensor([1, 1, -1, -1])).tolist(),
                                                                         t.priors.centers)).nonzero()
    text = "\n".join(rule_numbers(t, int(inside_p0[0])))
    assert "outside [-1, 64]" in text and "(fits P" in text and "GT1" not in text
    assert rule_numbers(t, 0)[-1].strip() == "inside no GT box"


def test_simota_centre_squares_and_costs_with_ties():
    t = inspect((640, 640), GTS * 0.8, LABELS, find_config("yolox_s_coco"), "init", postprocess=False)
    regions = rule_regions(t, 0)
    assert [(r.kind, r.level, r.value) for r in regions] == [("centre", 0, 20.0), ("centre", 1, 40.0),
                                                             ("centre", 2, 80.0)]
    assert regions[2].box == (120.0, 128.0, 280.0, 288.0)
    ar = t.assign_result
    pos = int((ar.gt_inds == 1).nonzero()[0])
    lines = rule_numbers(t, pos)
    assert lines[0].startswith("SimOTA: a candidate") and "+1e5" in lines[0]
    (gt0,) = [line for line in lines if line.strip().startswith("GT0:")]
    assert "rank 1 of" in gt0 and "IoU" in gt0
    assert lines[-1].strip() == "GT1: not inside both box and centre region: cost + 1e5"
    assert rule_numbers(t, 0) == ["SimOTA: not a candidate (outside every GT box and every centre region \u00b120)"]


def test_other_assigners_have_no_rule_geometry():
    t = inspect((300, 300), GTS * 0.3, LABELS, find_config("ssd300_coco"), postprocess=False)
    assert rule_regions(t, 0) == [] and rule_numbers(t, 0) == []
