"""GFL's head against mmdetection 3.3.0 (``fixtures/make_gfl_reference.py``): ATSS targets, the QFL
score targets, weights and DFL targets, the three losses and the detections of two head settings
on the same head outputs (one image with invalid anchors past its pad_shape, one without a GT);
the head network's forward and names; mmdetection's GFL config files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.builder import ConfigBuildError, build_head_core
from detengine.dense_losses import distribution_focal_loss
from detengine.heads.gfl import anchor_centers
from detengine.models import build_detector
from detengine.models.gfl import GFLHeadModule
from tests.engine.fixtures.det_random import det_randn, det_uniform
from tests.engine.fixtures.make_fcos_reference import featmap_sizes
from tests.engine.fixtures.make_resnet_styles_reference import filled
from tests.engine.levels import flat_levels
from tests.floats import assert_boxes_close, assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_gfl_reference.pt"
CASES = ["gfl", "reg_max_8"]


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _model(R, case):
    ref = R["heads"][case]
    return dict(type="GFL", bbox_head=ref["head"], train_cfg=ref["train_cfg"], test_cfg=ref["test_cfg"])


def _head_outputs(R, reg_max):
    seeds, c, cls, reg = R["meta"]["seeds"], R["meta"]["num_classes"], [], []
    for i, (h, w) in enumerate(featmap_sizes()):
        cls.append(det_randn((3, c, h, w), seeds["cls"] + i, scale=1.5, shift=-2.0))
        n = 3 * 4 * (reg_max + 1) * h * w
        reg.append(((det_uniform(n, seeds["reg"] + i) - 0.5) * 6.0).float().view(3, 4 * (reg_max + 1), h, w))
    return flat_levels(cls, c), flat_levels(reg, 4 * (reg_max + 1))


def _close(actual, expected, rtol=1e-5, what=""):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=1e-6, msg=what or None)


def _setup(R, case):
    core = build_head_core(_model(R, case))
    image = tuple(R["meta"]["image"])
    cls, reg = _head_outputs(R, core.reg_max)
    priors = [core.priors(image, pad_shape=tuple(p)) for p in R["meta"]["pad_shapes"]]
    targets = [core.targets(p, g["bboxes"], g["labels"], tuple(s), cls_scores=c, bbox_preds=r)
               for p, g, s, c, r in zip(priors, R["meta"]["gts"], R["meta"]["img_shapes"], cls, reg, strict=True)]
    return core, priors, targets, cls, reg


@pytest.fixture(scope="module")
def setups(R):
    return {case: _setup(R, case) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_targets_scores_and_weights_match_mmdet(R, setups, case):
    """Labels, label weights (0 past pad_shape) and positives exactly; GT boxes, the weights (max
    class sigmoid) within the ULP budget; the QFL score targets (IoU in stride units) and the DFL
    targets (clamped to [0, reg_max - 0.1]) to float rounding."""
    core, priors, targets, cls, reg = setups[case]
    norm = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    for p, t, c, r, ref in zip(priors, targets, cls, reg, R["heads"][case]["targets"], strict=True):
        pos = ref["pos_inds"]
        assert_ulp_close(t.labels, ref["labels"].long(), what="labels")
        assert_ulp_close(t.label_weights.to(torch.int8), ref["label_weights"], what="label weights")
        assert_ulp_close(t.sampling_result.pos_inds, pos, what="positives")
        assert_ulp_close(t.bbox_targets[pos], ref["bbox_targets"], what="GT boxes")
        assert_ulp_close(t.extras["weight_targets"][pos], ref["weight_targets"], what="weights")
        loss = core.loss_image(c, r, p, t, norm)
        _close(loss.quality_targets[pos], ref["score"], what="QFL score targets")
        if pos.numel():
            strides = p.prior_strides[pos][:, :1]
            corners = core.bbox_coder.encode(anchor_centers(p.tensor[pos]) / strides, t.bbox_targets[pos] / strides,
                                             core.reg_max)
            _close(corners, ref["dfl_targets"], what="DFL targets")
            assert float(corners.max()) <= core.reg_max - 0.1 + 1e-6


@pytest.mark.parametrize("case", CASES)
def test_losses_and_detections_match_mmdet(R, setups, case):
    """QFL / avg_factor, weighted GIoU and DFL / the clamped weight sum, summed over levels as
    mmdetection reports them; every per-anchor record sums to its term; the detections."""
    core, priors, targets, cls, reg = setups[case]
    ref = R["heads"][case]
    norm = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    assert norm.num_pos == ref["avg_factor"]
    assert norm.weight == pytest.approx(max(ref["weight_sum"], 1.0), rel=1e-6)
    per_image = [core.loss_image(c, r, p, t, norm) for c, r, p, t in zip(cls, reg, priors, targets, strict=True)]
    for key, expected in ref["loss"].items():
        _close(sum(loss.terms[key] for loss in per_image), torch.tensor(expected), what=key)
    for loss in per_image:
        _close(loss.cls_per_prior.sum(), loss.terms["loss_cls"])
        _close(loss.bbox_per_prior.sum(), loss.terms["loss_bbox"])
        _close(loss.dfl_per_prior.sum(), loss.terms["loss_dfl"])
    for i, expected in enumerate(ref["predict"]):
        result = core.predict(cls[i], reg[i], priors[i], tuple(R["meta"]["img_shapes"][i]))
        assert_ulp_close(result.labels, expected["labels"], what="labels")
        _close(result.scores, expected["scores"], what="scores")
        assert_boxes_close(result.boxes, expected["bboxes"])


def test_head_network_matches_mmdet(R):
    ref, head = R["module"]["gfl"], R["heads"]["gfl"]["head"]
    module = GFLHeadModule.from_config(head, in_channels=8, num_levels=5, num_classes=4).eval()
    assert [(k, list(v.shape)) for k, v in module.state_dict().items()] == [tuple(n) for n in ref["names"]]
    module.load_state_dict(filled(dict(module.state_dict())))
    feats = [det_randn((1, 8, h, w), R["meta"]["seeds"]["feat"] + i) for i, (h, w) in enumerate(featmap_sizes())]
    with torch.no_grad():
        outs = [module.forward_single(f, i) for i, f in enumerate(feats)]
        cls, _ = module(feats)
    _close(cls, flat_levels(ref["cls"], 4), rtol=1e-4, what="logits")
    for (_, reg), crop in zip(outs, ref["reg_crop"], strict=True):
        _close(reg[..., :6, :8], crop, rtol=1e-4, what="distribution logits")


def test_dfl_by_hand():
    """Target 2.3 between bins 2 and 3: 0.7 CE at bin 2 + 0.3 CE at bin 3."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5, -1.0]])
    logp = logits.log_softmax(1)[0]
    expected = -(0.7 * logp[2] + 0.3 * logp[3])
    _close(distribution_focal_loss(logits, torch.tensor([2.3])), expected.view(1))


def test_mmdetections_gfl_files_build_or_are_refused(R):
    for name, ref in R["configs"].items():
        if "dconv" in name:
            with pytest.raises(ConfigBuildError, match="model.backbone.dcn="):
                build_detector(ref["model"])
            continue
        with torch.device("meta"):
            model = build_detector(ref["model"]).eval()
            feats = model.neck(model.backbone(torch.zeros(1, 3, *R["meta"]["config_input"])))
        numel = [sum(p.numel() for p in m.parameters()) for m in (model, model.backbone, model.neck, model.head)]
        assert numel == [ref["params"], ref["backbone_params"], ref["neck_params"], ref["head_params"]], name
        assert [list(f.shape[1:]) for f in feats] == ref["feature_shapes"]
        assert len(model.core.priors(tuple(R["meta"]["config_input"]))) == ref["num_priors"]


def test_the_shipped_gfl_traces_and_a_tiny_gfl_trains_a_step():
    """``gfl_r50_fpn_coco`` traces (ATSS reasons, the three losses, the DFL term per level and
    GT); a tiny GFL of its layout takes a backward pass with finite losses."""
    from detengine.api import inspect
    from detengine.config import load_config
    from detengine.shipped import find_config
    trace = inspect((128, 128), [[10, 20, 100, 120], [40, 40, 80, 90]], [3, 5], "gfl_r50_fpn_coco", predictions="init")
    assert trace.assigner_name == "ATSSAssigner" and trace.assign_result.num_pos > 0
    assert set(trace.loss.terms) == {"loss_cls", "loss_bbox", "loss_dfl"}
    assert sum(trace.loss_breakdown["per_gt"]["loss_dfl"]) == pytest.approx(float(trace.loss.terms["loss_dfl"]), rel=1e-5)
    model_cfg = load_config(find_config("gfl_r50_fpn_coco")).to_dict()["model"]
    tiny = {**model_cfg, "backbone": {**model_cfg["backbone"], "depth": 18, "init_cfg": None},
            "neck": {**model_cfg["neck"], "in_channels": [64, 128, 256, 512], "out_channels": 32},
            "bbox_head": {**model_cfg["bbox_head"], "in_channels": 32, "feat_channels": 32, "stacked_convs": 1,
                          "num_classes": 3}}
    torch.manual_seed(0)
    model = build_detector(tiny).train()
    model.backbone.requires_grad_(False)          # the head's gradients are the point; saves 80 %
    batch = {"images": torch.randn(2, 3, 64, 96),
             "gt_boxes": [torch.tensor([[10.0, 12.0, 50.0, 60.0]]), torch.zeros(0, 4)],
             "gt_labels": [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]}
    losses, trace = model.loss(batch, trace_index=0)
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and model.head.gfl_reg.weight.grad.abs().sum() > 0
    assert trace.assign_result.num_pos > 0 and float(losses["loss_dfl"].detach()) > 0
