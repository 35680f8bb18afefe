"""ATSS's head against mmdetection 3.3.0 (``fixtures/make_atss_reference.py``): targets, the three
losses and the detections of two head settings on the same head outputs (one image with invalid
anchors past its pad_shape, one without a GT); the head network's forward and names; mmdetection's
ATSS config files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.builder import ConfigBuildError, build_head_core
from detengine.models import build_detector
from detengine.models.atss import ATSSHeadModule
from tests.engine.fixtures.det_random import det_randn
from tests.engine.fixtures.make_fcos_reference import featmap_sizes
from tests.engine.fixtures.make_resnet_styles_reference import filled
from tests.engine.levels import flat_levels
from tests.floats import assert_boxes_close, assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_atss_reference.pt"
CASES = ["atss", "two_ratios"]


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _model(R, case):
    ref = R["heads"][case]
    return dict(type="ATSS", bbox_head=ref["head"], train_cfg=ref["train_cfg"], test_cfg=ref["test_cfg"])


def _head_outputs(R, num_anchors):
    seeds, c, cls, reg, ctr = R["meta"]["seeds"], R["meta"]["num_classes"], [], [], []
    for i, (h, w) in enumerate(featmap_sizes()):
        cls.append(det_randn((3, num_anchors * c, h, w), seeds["cls"] + i, scale=1.5, shift=-2.0))
        reg.append(det_randn((3, num_anchors * 4, h, w), seeds["reg"] + i, scale=0.5))
        ctr.append(det_randn((3, num_anchors, h, w), seeds["ctr"] + i))
    return torch.cat([flat_levels(cls, c), flat_levels(ctr, 1)], dim=-1), flat_levels(reg, 4)


def _close(actual, expected, rtol=1e-5, what=""):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=1e-6, msg=what or None)


def _setup(R, case):
    core = build_head_core(_model(R, case))
    image = tuple(R["meta"]["image"])
    priors = [core.priors(image, pad_shape=tuple(p)) for p in R["meta"]["pad_shapes"]]
    targets = [core.targets(p, g["bboxes"], g["labels"], tuple(s))
               for p, g, s in zip(priors, R["meta"]["gts"], R["meta"]["img_shapes"], strict=True)]
    return core, priors, targets


@pytest.mark.parametrize("case", CASES)
def test_targets_match_mmdet(R, case):
    """Labels, label weights (0 past pad_shape) and positives exactly; GT boxes and centerness
    targets within the fixtures' ULP budget."""
    _, _, targets = _setup(R, case)
    for t, ref in zip(targets, R["heads"][case]["targets"], strict=True):
        assert_ulp_close(t.labels, ref["labels"].long(), what="labels")
        assert_ulp_close(t.label_weights.to(torch.int8), ref["label_weights"], what="label weights")
        assert_ulp_close(t.sampling_result.pos_inds, ref["pos_inds"], what="positives")
        assert_ulp_close(t.bbox_targets[ref["pos_inds"]], ref["bbox_targets"], what="GT boxes")
        assert_ulp_close(t.extras["centerness_targets"][ref["pos_inds"]], ref["centerness"], what="centerness")


@pytest.mark.parametrize("case", CASES)
def test_losses_and_detections_match_mmdet(R, case):
    core, priors, targets = _setup(R, case)
    ref = R["heads"][case]
    cls, reg = _head_outputs(R, core.num_base_priors[0])
    norm = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    assert norm.num_pos == ref["avg_factor"]
    per_image = [core.loss_image(c, r, p, t, norm) for c, r, p, t in zip(cls, reg, priors, targets, strict=True)]
    for key, expected in ref["loss"].items():
        _close(sum(loss.terms[key] for loss in per_image), torch.tensor(expected), what=key)
    for loss in per_image:
        _close(loss.bbox_per_prior.sum(), loss.terms["loss_bbox"])
        _close(loss.centerness_per_prior.sum(), loss.terms["loss_centerness"])
    for i, expected in enumerate(ref["predict"]):
        result = core.predict(cls[i], reg[i], priors[i], tuple(R["meta"]["img_shapes"][i]))
        assert_ulp_close(result.labels, expected["labels"], what="labels")
        _close(result.scores, expected["scores"], what="scores")
        assert_boxes_close(result.boxes, expected["bboxes"])


@pytest.mark.parametrize("case", CASES)
def test_head_network_matches_mmdet(R, case):
    ref, head = R["module"][case], R["heads"][case]["head"]
    core = build_head_core(_model(R, case))
    module = ATSSHeadModule.from_config(head, in_channels=8, num_levels=5, num_base_priors=core.num_base_priors[0],
                                        num_classes=4).eval()
    assert [(k, list(v.shape)) for k, v in module.state_dict().items()] == [tuple(n) for n in ref["names"]]
    module.load_state_dict(filled(dict(module.state_dict())))
    feats = [det_randn((1, 8, h, w), R["meta"]["seeds"]["feat"] + i) for i, (h, w) in enumerate(featmap_sizes())]
    with torch.no_grad():
        cls, reg = module(feats)
    _close(cls, torch.cat([flat_levels(ref["cls"], 4), flat_levels(ref["ctr"], 1)], dim=-1), rtol=1e-4, what="logits")
    _close(reg, flat_levels(ref["reg"], 4), rtol=1e-4, what="deltas")


def test_mmdetections_atss_files_build_or_are_refused(R):
    for name, ref in R["configs"].items():
        if "lsj" in name:
            with pytest.raises(ConfigBuildError, match="model.data_preprocessor.batch_augments="):
                build_detector(ref["model"])
            continue
        with torch.device("meta"):
            model = build_detector(ref["model"]).eval()
            feats = model.neck(model.backbone(torch.zeros(1, 3, *R["meta"]["config_input"])))
        numel = [sum(p.numel() for p in m.parameters()) for m in (model, model.backbone, model.neck, model.head)]
        assert numel == [ref["params"], ref["backbone_params"], ref["neck_params"], ref["head_params"]], name
        assert [list(f.shape[1:]) for f in feats] == ref["feature_shapes"]
        assert len(model.core.priors(tuple(R["meta"]["config_input"]))) == ref["num_priors"]


def test_mmdetections_atss_file_traces_and_a_tiny_atss_trains_a_step(R):
    """The ATSS assigner's reasons in the trace; a tiny ATSS (ResNet-18, 32 channels) of the same
    layout takes a backward pass with finite losses and the trace of the batch's first image."""
    from detengine.trace import inspect
    model_cfg = R["configs"]["atss_r50_fpn_1x_coco"]["model"]
    trace = inspect((320, 320), [[10, 20, 200, 300], [40, 40, 80, 90]], [3, 5], model_cfg, predictions="init")
    assert trace.assigner_name == "ATSSAssigner" and trace.assign_result.num_pos > 0
    assert set(trace.loss.terms) == {"loss_cls", "loss_bbox", "loss_centerness"}
    tiny = {**model_cfg, "backbone": {**model_cfg["backbone"], "depth": 18, "init_cfg": None},
            "neck": {**model_cfg["neck"], "in_channels": [64, 128, 256, 512], "out_channels": 32},
            "bbox_head": {**model_cfg["bbox_head"], "in_channels": 32, "feat_channels": 32, "stacked_convs": 1,
                          "num_classes": 3}}
    torch.manual_seed(0)
    model = build_detector(tiny).train()
    batch = {"images": torch.randn(2, 3, 96, 128),
             "gt_boxes": [torch.tensor([[10.0, 12.0, 70.0, 80.0]]), torch.zeros(0, 4)],
             "gt_labels": [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]}
    losses, trace = model.loss(batch, trace_index=0)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and model.head.atss_centerness.weight.grad.abs().sum() > 0
    assert trace.assign_result.num_pos > 0
