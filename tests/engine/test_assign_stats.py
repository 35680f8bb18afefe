"""The trainer's assignment statistics are the assignment the loss used: positives per GT and per
level, GTs without a positive (by COCO size bucket, on input pixels) and ignored priors, checked
against the trace of the same image (issue "What no tool shows", part 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detengine.assign_stats import assignment_stats
from detengine.cli import resolve_config
from detengine.trace import inspect
from detengine.train.runner import load_cfg


def test_statistics_equal_the_traced_assignment():
    cfg = load_cfg(str(resolve_config("ssd300_coco")))
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [150.0, 150.0, 160.0, 158.0], [40.0, 40.0, 90.0, 110.0],
                          [200.0, 30.0, 296.0, 290.0]])
    labels = torch.tensor([0, 3, 1, 2])
    trace = inspect((300, 300), boxes, labels, cfg, None, postprocess=False)
    targets, priors = trace.targets, trace.priors
    stats = assignment_stats([targets], [priors], [boxes])
    gt_inds = targets.assign_result.gt_inds
    per_gt = np.array([int((gt_inds == k + 1).sum()) for k in range(len(boxes))])
    assert stats["assign/num_gts"] == 4
    assert stats["assign/pos_per_gt_mean"] == pytest.approx(per_gt.mean())
    assert stats["assign/gt_zero_pos_frac"] == pytest.approx((per_gt == 0).mean())
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).numpy()
    small = area < 32 ** 2                                       # only the 10x8 box
    assert small.sum() == 1 and stats["assign/gt_zero_pos_frac_small"] == float(per_gt[small][0] == 0)
    offsets = priors.level_offsets
    pos = torch.nonzero(gt_inds > 0).flatten()
    for level in range(priors.num_levels):
        inside = int(((pos >= offsets[level]) & (pos < offsets[level + 1])).sum())
        assert stats[f"assign/pos_level_{level}"] == inside
    assert sum(stats[f"assign/pos_level_{i}"] for i in range(priors.num_levels)) == per_gt.sum()
    assert stats["assign/ignored"] == int((gt_inds == -1).sum())
