"""FCOS against mmdetection 3.3.0 (``fixtures/make_fcos_reference.py``): targets, the three
losses and the detections of three head settings on the same head outputs; the head network's
forward and parameter names; mmdetection's FCOS config files; the "Why?" of the point rule."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.assigners import FCOSAssigner, Reason
from detengine.builder import ConfigBuildError, build_head_core
from detengine.models import build_detector
from detengine.models.fcos import FCOSHeadModule
from tests.engine.fixtures.det_random import det_randn, det_uniform
from tests.engine.fixtures.make_fcos_reference import SEEDS, featmap_sizes
from tests.engine.fixtures.make_resnet_styles_reference import filled
from tests.engine.levels import flat_levels
from tests.floats import assert_boxes_close, assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_fcos_reference.pt"
CASES = ["plain", "center_giou", "small_ranges"]


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _model(R, case: str) -> dict:
    meta, ref = R["meta"], R["heads"][case]
    head = dict(type="FCOSHead", num_classes=meta["num_classes"], in_channels=8, feat_channels=8, stacked_convs=2,
                strides=meta["strides"], norm_cfg=dict(type="GN", num_groups=4, requires_grad=True), **ref["settings"])
    return dict(type="FCOS", bbox_head=head, test_cfg=ref["test_cfg"])


def _head_outputs(R):
    """The fixture's head outputs, rebuilt: (B, A, C + 1) logits with centerness last, (B, A, 4)
    pixel distances."""
    c, cls, reg, ctr = R["meta"]["num_classes"], [], [], []
    for i, (h, w) in enumerate(featmap_sizes()):
        cls.append(det_randn((3, c, h, w), SEEDS["cls"] + i, scale=1.5, shift=-2.0))
        u = det_uniform(3 * 4 * h * w, SEEDS["reg"] + i).view(3, 4, h, w)
        reg.append((0.5 + 3.0 * u).float() * R["meta"]["strides"][i])
        ctr.append(det_randn((3, 1, h, w), SEEDS["ctr"] + i))
    return torch.cat([flat_levels(cls, c), flat_levels(ctr, 1)], dim=-1), flat_levels(reg, 4)


def _close(actual, expected, rtol=1e-5, what=""):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=1e-6, msg=what or None)


def _targets(R, case):
    core = build_head_core(_model(R, case))
    priors = core.priors(tuple(R["meta"]["image"]))
    gts = R["meta"]["gts"]
    return core, priors, [core.targets(priors, g["bboxes"], g["labels"], tuple(R["meta"]["image"])) for g in gts]


@pytest.mark.parametrize("case", CASES)
def test_targets_match_mmdet(R, case):
    """Labels of every point and the positives exactly; box and centerness targets (in the loss's
    units: stride units with norm_on_bbox) within the fixtures' ULP budget."""
    _, _, targets = _targets(R, case)
    for t, ref in zip(targets, R["heads"][case]["targets"], strict=True):
        assert_ulp_close(t.labels, ref["labels"].long(), what="labels")
        assert_ulp_close(t.sampling_result.pos_inds, ref["pos_inds"], what="positives")
        pos = ref["pos_inds"]
        assert_ulp_close(t.bbox_targets[pos], ref["bbox_targets"], what="bbox targets")
        assert_ulp_close(t.extras["centerness_targets"][pos], ref["centerness"], what="centerness targets")
        assert float(t.bbox_targets.abs().sum()) == pytest.approx(float(ref["bbox_targets"].abs().sum()))


@pytest.mark.parametrize("case", CASES)
def test_losses_match_mmdet(R, case):
    """The batch's three losses (sums over images of the per-image terms, as the detector adds
    them), and every per-point record sums to its term."""
    core, priors, targets = _targets(R, case)
    cls, reg = _head_outputs(R)
    norm = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    per_image = [core.loss_image(c, r, priors, t, norm) for c, r, t in zip(cls, reg, targets, strict=True)]
    for key, expected in R["heads"][case]["loss"].items():
        total = sum(loss.terms[key] for loss in per_image)
        _close(total, torch.tensor(expected), what=key)
    for loss in per_image:
        _close(loss.cls_per_prior.sum(), loss.terms["loss_cls"])
        _close(loss.bbox_per_prior.sum(), loss.terms["loss_bbox"])
        _close(loss.centerness_per_prior.sum(), loss.terms["loss_centerness"])
    assert norm.num_pos == sum(t.num_pos for t in targets)


@pytest.mark.parametrize("case", CASES)
def test_detections_match_mmdet(R, case):
    """Class sigmoid for score_thr and nms_pre, times the centerness sigmoid, clipped to each
    image's img_shape, per-class NMS, max_per_img: mmdetection's boxes, scores and labels."""
    core = build_head_core(_model(R, case))
    priors = core.priors(tuple(R["meta"]["image"]))
    cls, reg = _head_outputs(R)
    for i, ref in enumerate(R["heads"][case]["predict"]):
        result = core.predict(cls[i], reg[i], priors, tuple(R["meta"]["img_shapes"][i]))
        assert_ulp_close(result.labels, ref["labels"], what="labels")
        _close(result.scores, ref["scores"], what="scores")
        assert_boxes_close(result.boxes, ref["bboxes"])


@pytest.mark.parametrize("case", ["plain", "center_giou"])
def test_head_network_matches_mmdet(R, case):
    """mmdetection's parameter names (``bbox_head.`` less) in mmdetection's order, and with the
    same weights the same outputs on every level (distances in pixels, as mmdetection's eval)."""
    ref = R["module"][case]
    head = _model(R, case)["bbox_head"]
    module = FCOSHeadModule.from_config(head, in_channels=8, strides=R["meta"]["strides"], num_classes=4).eval()
    assert [(k, list(v.shape)) for k, v in module.state_dict().items()] == [tuple(n) for n in ref["names"]]
    module.load_state_dict(filled({k: v for k, v in module.state_dict().items()}))
    feats = [det_randn((1, 8, h, w), SEEDS["feat"] + i) for i, (h, w) in enumerate(featmap_sizes())]
    with torch.no_grad():
        cls, reg = module(feats)
    expected_cls = flat_levels([torch.cat([c, t], dim=1) for c, t in zip(ref["cls"], ref["ctr"])], 5)
    _close(cls, expected_cls, rtol=1e-4, what="class + centerness logits")
    _close(reg, flat_levels(ref["reg"], 4), rtol=1e-4, what="distances")


def test_mmdetections_fcos_files_build_or_are_refused(R):
    """The network mmdetection builds from its own FCOS files (parameters per part, feature maps,
    points); the deformable-conv and batch-augmentation variants refused by key."""
    refused = {"fcos_r50-dcn-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco": "model.backbone.dcn=",
               "fcos_r50_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco":
                   "model.data_preprocessor.batch_augments="}
    for name, ref in R["configs"].items():
        if name in refused:
            with pytest.raises(ConfigBuildError, match=refused[name].replace("(", r"\(")):
                build_detector(ref["model"])
            continue
        with torch.device("meta"):
            model = build_detector(ref["model"]).eval()
            feats = model.neck(model.backbone(torch.zeros(1, 3, *R["meta"]["config_input"])))
        numel = [sum(p.numel() for p in m.parameters()) for m in (model, model.backbone, model.neck, model.head)]
        assert numel == [ref["params"], ref["backbone_params"], ref["neck_params"], ref["head_params"]], name
        assert [list(f.shape[1:]) for f in feats] == ref["feature_shapes"]
        assert len(model.core.priors(tuple(R["meta"]["config_input"]))) == ref["num_priors"]


def _one_level_points(xs, ys, stride):
    """Point priors ``[x, y, stride, stride]`` of one level."""
    pts = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float32)
    return torch.cat([pts, torch.full_like(pts, float(stride))], dim=1)


def test_why_a_point_inside_a_gt_is_not_positive():
    """Each rule by hand on one level (stride 8, range (-1, 20)): outside the GT, outside the
    centre region, outside the range, lost to a smaller GT; per point and per (GT, point)."""
    assigner = FCOSAssigner(regress_ranges=((-1, 20),), center_sampling=True, center_sample_radius=1.5)
    points = _one_level_points([12.0, 20.0, 30.0, 60.0], [20.0], 8)
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0], [16.0, 16.0, 24.0, 24.0], [50.0, 0.0, 90.0, 40.0]])
    result = assigner.assign(points, gts, torch.tensor([0, 1, 2]), num_level_priors=[4])
    # x=12: GT0's centre region is 20 +- 12 -> (8, 32): inside, max(l,t,r,b) = 28 > 20 -> range
    # x=20: inside GT0's region and GT1 (area 64 < 1600): GT1 takes it; x=30: GT0 region, max 30 > 20
    # x=60: inside GT2's box, but its region is 70 +- 12 -> (58, 82) holds it: max(10, 20, 30, 20) = 30 > 20
    assert result.gt_inds.tolist() == [0, 2, 0, 0]
    assert result.reasons.tolist() == [Reason.OUTSIDE_REGRESS_RANGE, Reason.POS_FCOS,
                                       Reason.OUTSIDE_REGRESS_RANGE, Reason.OUTSIDE_REGRESS_RANGE]
    pair = result.extras["pair_reasons"]
    assert pair.shape == (3, 4)
    assert pair[0].tolist() == [Reason.OUTSIDE_REGRESS_RANGE, Reason.LOST_TO_SMALLER_GT,
                                Reason.OUTSIDE_REGRESS_RANGE, Reason.OUTSIDE_GT]
    assert pair[1].tolist() == [Reason.OUTSIDE_GT, Reason.POS_FCOS, Reason.OUTSIDE_GT, Reason.OUTSIDE_GT]
    narrow = FCOSAssigner(regress_ranges=((-1, 100),), center_sampling=True, center_sample_radius=0.5)
    far = narrow.assign(points, gts[:1], torch.tensor([0]), num_level_priors=[4])
    assert far.reasons.tolist() == [Reason.OUTSIDE_CENTER_REGION, Reason.POS_FCOS, Reason.OUTSIDE_CENTER_REGION,
                                    Reason.NOT_INSIDE_ANY_GT]


@pytest.mark.parametrize("num_gts, num_points", [(0, 4), (2, 0), (0, 0)])
def test_empty_assignments_are_shaped(num_gts, num_points):
    points = _one_level_points([4.0, 12.0, 20.0, 28.0][:num_points], [4.0], 8) if num_points else torch.zeros(0, 4)
    gts = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 0.0, 30.0, 8.0]])[:num_gts]
    result = FCOSAssigner(regress_ranges=((-1, 64),)).assign(points, gts, torch.zeros(num_gts, dtype=torch.long),
                                                             num_level_priors=[num_points])
    assert result.gt_inds.tolist() == [0] * num_points and result.extras["pair_reasons"].shape == (num_gts, num_points)


def test_the_shipped_config_traces_and_a_tiny_fcos_trains_a_step():
    """``fcos_r50_fpn_coco`` traces (points, assignment, loss, NMS record); a tiny FCOS of the
    same layout takes an SGD step with finite losses and the trace of the batch's image."""
    from detengine.api import inspect
    from detengine.config import load_config
    from detengine.shipped import find_config
    trace = inspect((320, 320), [[10, 20, 200, 300], [40, 40, 80, 90]], [3, 5], "fcos_r50_fpn_coco",
                    predictions="init")
    assert trace.assigner_name == "FCOSAssigner" and trace.assign_result.num_pos > 0
    assert set(trace.loss.terms) == {"loss_cls", "loss_bbox", "loss_centerness"}
    model_cfg = load_config(find_config("fcos_r50_fpn_coco")).to_dict()["model"]
    model_cfg["backbone"].update(depth=18, init_cfg=None)
    model_cfg["neck"]["in_channels"] = [64, 128, 256, 512]
    model_cfg["neck"]["out_channels"] = model_cfg["bbox_head"]["in_channels"] = 32
    model_cfg["bbox_head"].update(feat_channels=32, stacked_convs=1, num_classes=3)
    torch.manual_seed(0)
    model = build_detector(model_cfg).train()
    batch = {"images": torch.randn(2, 3, 96, 128), "gt_boxes": [torch.tensor([[10.0, 12.0, 70.0, 80.0]]),
                                                               torch.zeros(0, 4)],
             "gt_labels": [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]}
    losses, trace = model.loss(batch, trace_index=0)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and model.head.conv_centerness.weight.grad.abs().sum() > 0
    assert trace.assign_result.num_pos > 0 and trace.targets.extras["centerness_targets"].max() <= 1
