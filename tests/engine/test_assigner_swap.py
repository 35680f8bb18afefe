"""A prediction-weighted assigner (task-aligned, SimOTA, DSL) put in the place of an anchor head's
MaxIoU (the Assignment view's assigner swap, or a config): the head gives it what the heads that
ship with it give (TOOD: sigmoid probabilities on xyxy anchors; YOLOX: probabilities on points
with their stride; RTMDet's DSL: logits on points) and the trace's assignment is exactly the
assigner's own on those inputs."""
from __future__ import annotations

import pytest
import torch

from detengine.assigners import DynamicSoftLabelAssigner, SimOTAAssigner, TaskAlignedAssigner
from detengine.trace import head_core_for, inspect, model_config, random_predictions
from tests.engine.test_trace import CONFIGS

GT = torch.tensor([[10.0, 20, 200, 240], [300, 280, 420, 400], [40, 40, 90, 80]])
LABELS = torch.tensor([3, 7, 3])


@pytest.mark.parametrize("config, kind", [
    ("retinanet_r50_fpn_coco", "TaskAlignedAssigner"), ("retinanet_r50_fpn_coco", "SimOTAAssigner"),
    ("retinanet_r50_fpn_coco", "DynamicSoftLabelAssigner"), ("ssd300_coco", "TaskAlignedAssigner"),  # softmax scores
    ("ssd300_coco", "SimOTAAssigner")])
def test_a_prediction_weighted_assigner_on_an_anchor_head(config, kind):
    model = model_config(CONFIGS / f"{config}.py")
    model["train_cfg"]["assigner"] = {"type": kind}
    core = head_core_for(model)
    shape = (320, 320) if config.startswith("retina") else (300, 300)
    gt = GT * (shape[0] / 512)
    plain = inspect(shape, gt, LABELS, model)                       # no model given: its initial outputs
    assert plain.predictions_source == "init" and plain.assign_result.num_pos > 0
    cls, reg = random_predictions(core, plain.priors, seed=4, cls_std=2.0)
    trace = inspect(shape, gt, LABELS, model, (cls, reg))
    priors = trace.priors
    boxes = core.decode(priors.tensor, reg)
    if kind == "DynamicSoftLabelAssigner":
        scores = cls
    elif core.score_layout == "sigmoid":
        scores = cls.sigmoid()
    else:
        scores = cls.softmax(-1)[:, :core.num_classes]
    assigner = {"TaskAlignedAssigner": TaskAlignedAssigner(), "SimOTAAssigner": SimOTAAssigner(),
                "DynamicSoftLabelAssigner": DynamicSoftLabelAssigner()}[kind]
    form = priors.tensor if kind == "TaskAlignedAssigner" else torch.cat([priors.centers, priors.prior_strides], 1)
    assert bool((trace.assign_result.gt_inds >= 0).all())          # allowed_border -1: every anchor takes part
    own = assigner.assign(form, gt, LABELS, pred_scores=scores, pred_boxes=boxes, num_level_priors=priors.num_per_level)
    assert torch.equal(trace.assign_result.gt_inds, own.gt_inds)
    assert torch.equal(trace.assign_result.labels, own.labels)
    assert all(torch.isfinite(v) for v in trace.loss.terms.values())
