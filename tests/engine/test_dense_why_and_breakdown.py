"""The per-GT "Why?" of assigners that keep a reason per (GT, prior) pair, and the extra loss
terms (FCOS / ATSS centerness) in the trace's loss breakdown per level and per GT."""
from __future__ import annotations

import pytest
import torch

from detengine.api import inspect
from detengine.assigners import REASON_TEXT, AssignResult, FCOSAssigner, Reason


def test_why_per_gt_reads_the_pair_reasons():
    assigner = FCOSAssigner(regress_ranges=((-1, 20),), center_sampling=True, center_sample_radius=1.5)
    points = torch.tensor([[12.0, 20.0, 8, 8], [20.0, 20.0, 8, 8]])
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0], [16.0, 16.0, 24.0, 24.0]])
    result = assigner.assign(points, gts, torch.tensor([0, 1]), num_level_priors=[2])
    assert result.why_per_gt(1) == [f"GT0: {REASON_TEXT[Reason.LOST_TO_SMALLER_GT]}",
                                    f"GT1: {REASON_TEXT[Reason.POS_FCOS]}"]
    assert result.why_per_gt(0)[1] == f"GT1: {REASON_TEXT[Reason.OUTSIDE_GT]}"
    assert result.why_per_gt(5) == [] and AssignResult.random().why_per_gt(0) == []
    unmapped = result.unmap(torch.tensor([True, False, True]))
    assert unmapped.extras["pair_reasons"][:, 1].tolist() == [Reason.INVALID_PRIOR] * 2
    assert unmapped.why_per_gt(2) == result.why_per_gt(1)


@pytest.mark.parametrize("config", ["fcos_r50_fpn_coco"])
def test_centerness_is_in_the_loss_breakdown_per_level_and_per_gt(config):
    trace = inspect((256, 256), [[10, 20, 200, 240], [40, 40, 80, 90]], [3, 5], config, predictions="init")
    b = trace.loss_breakdown
    for part in ("per_level", "per_gt"):
        assert set(b[part]) == {"loss_cls", "loss_bbox", "loss_centerness"}
    assert len(b["per_level"]["loss_centerness"]) == 5 and len(b["per_gt"]["loss_centerness"]) == 2
    term = b["terms"]["loss_centerness"]
    assert sum(b["per_level"]["loss_centerness"]) == pytest.approx(term, rel=1e-5)
    assert sum(b["per_gt"]["loss_centerness"]) == pytest.approx(term, rel=1e-5)   # positives only
    assert min(b["per_gt"]["loss_centerness"]) > 0


def test_the_inspect_report_prints_every_loss_term_per_level_and_per_gt():
    trace = inspect((256, 256), [[10, 20, 200, 240], [40, 40, 80, 90]], [3, 5], "fcos_r50_fpn_coco",
                    predictions="init")
    lines = trace.summary().splitlines()
    level0 = next(line for line in lines if line.strip().startswith("level 0: cls"))
    gt1 = next(line for line in lines if line.strip().startswith("gt 1:"))
    for line, value in ((level0, trace.loss_breakdown["per_level"]["loss_centerness"][0]),
                        (gt1, trace.loss_breakdown["per_gt"]["loss_centerness"][1])):
        assert "cls " in line and "bbox " in line and f"ctr {value:.6f}" in line
