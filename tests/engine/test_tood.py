"""TOOD against mmdetection 3.3.0 (``fixtures/make_tood_reference.py``): the task-aligned assigner
(positives, IoU, raw metrics) of three settings on a batch with conflicting GTs and a no-GT image;
the per-pair reasons by hand; the empty combinations."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.assigners import Reason, TaskAlignedAssigner
from detengine.priors import AnchorGenerator
from tests.engine.fixtures.det_random import det_randn, det_uniform
from tests.engine.fixtures.make_fcos_reference import featmap_sizes
from tests.engine.levels import flat_levels
from tests.floats import assert_boxes_close, assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_tood_reference.pt"


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def head_outputs(R):
    """The fixture's (3, A, C) class probabilities and (3, A, 4) boxes in stride units, rebuilt."""
    seeds, c, cls, boxes = R["meta"]["seeds"], R["meta"]["num_classes"], [], []
    for i, (h, w) in enumerate(featmap_sizes()):
        cls.append(det_randn((3, c, h, w), seeds["cls"] + i, scale=1.5, shift=-2.0).sigmoid())
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
        shift = (det_uniform(3 * 2 * h * w, seeds["shift"] + i).view(3, 2, h, w) - 0.5) * 0.5
        dist = 0.25 + 4.0 * det_uniform(3 * 4 * h * w, seeds["dist"] + i).view(3, 4, h, w)
        cx, cy = xs + shift[:, 0], ys + shift[:, 1]
        boxes.append(torch.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1).float())
    return flat_levels(cls, c), flat_levels(boxes, 4)


def _pixel_boxes(R, boxes):
    strides = torch.cat([torch.full((h * w, 1), float(s)) for (h, w), s in zip(featmap_sizes(), R["meta"]["strides"])])
    return boxes * strides


def _anchors(R):
    gen = AnchorGenerator(strides=R["meta"]["strides"], ratios=[1.0], octave_base_scale=8, scales_per_octave=1)
    return gen.grid_priors(featmap_sizes()).tensor


@pytest.mark.parametrize("case", ["tood", "loose", "tiny_topk"])
def test_task_aligned_assignment_matches_mmdet(R, case):
    """gt_inds and labels exactly; the matched IoU (-1e8 off positives) and raw metric within the
    fixtures' ULP budget."""
    ref = R["assigner"][case]
    s = ref["settings"]
    scores, boxes = head_outputs(R)
    pixels, anchors = _pixel_boxes(R, boxes), _anchors(R)
    assigner = TaskAlignedAssigner(topk=s["topk"], alpha=s["alpha"], beta=s["beta"])
    for img, (gt, expected) in enumerate(zip(R["meta"]["gts"], ref["images"], strict=True)):
        result = assigner.assign(anchors, gt["bboxes"], gt["labels"], pred_scores=scores[img], pred_boxes=pixels[img])
        assert_ulp_close(result.gt_inds, expected["gt_inds"].long(), what="gt_inds")
        assert_ulp_close(result.labels, expected["labels"].long(), what="labels")
        assert_ulp_close(result.max_overlaps, expected["max_overlaps"], what="max_overlaps")
        assert_ulp_close(result.extras["assign_metrics"], expected["assign_metrics"], what="assign_metrics")
        pos = result.gt_inds > 0
        assert (result.reasons[pos] == Reason.POS_TASK_ALIGNED).all()
        assert set(result.reasons[~pos].tolist()) <= {Reason.NOT_TOPK_ALIGNED, Reason.ZERO_ALIGNMENT,
                                                     Reason.ANCHOR_OUTSIDE_GT, Reason.NO_GT}


def test_why_a_prior_is_not_task_aligned():
    """By hand: anchors centred at x = 10, 25, 35, 90 (y = 10); GT0 spans x 0..40, GT1 20..60.
    Anchor 0 predicts a box far away (metric 0), anchors 1 and 2 sit in both GTs and predict boxes
    overlapping GT0 (IoU 0.95 vs 0.3) and GT1 (0.95 vs 0.3); anchor 3's centre is in neither."""
    anchors = torch.tensor([[5.0, 5, 15, 15], [20, 5, 30, 15], [30, 5, 40, 15], [85, 5, 95, 15]])
    gts = torch.tensor([[0.0, 0, 40, 20], [20, 0, 60, 20]])
    preds = torch.tensor([[100.0, 100, 110, 110], [0, 0, 38, 20], [22, 0, 60, 20], [24, 0, 58, 20]])
    scores = torch.full((4, 2), 0.5)
    result = TaskAlignedAssigner(topk=4).assign(anchors, gts, torch.tensor([0, 1]), pred_scores=scores,
                                                pred_boxes=preds)
    assert result.gt_inds.tolist() == [0, 1, 2, 0]
    pair = result.extras["pair_reasons"]
    assert pair[0].tolist() == [Reason.ZERO_ALIGNMENT, Reason.POS_TASK_ALIGNED, Reason.LOST_TO_HIGHER_IOU,
                                Reason.ANCHOR_OUTSIDE_GT]
    assert pair[1].tolist() == [Reason.ZERO_ALIGNMENT, Reason.LOST_TO_HIGHER_IOU, Reason.POS_TASK_ALIGNED,
                                Reason.ANCHOR_OUTSIDE_GT]
    assert result.reasons.tolist() == [Reason.ZERO_ALIGNMENT, Reason.POS_TASK_ALIGNED, Reason.POS_TASK_ALIGNED,
                                       Reason.ANCHOR_OUTSIDE_GT]
    assert result.max_overlaps[0] == -1e8 and result.extras["assign_metrics"][0] == 0
    torch.testing.assert_close(result.extras["assign_metrics"][1], torch.tensor(0.5 * 0.95 ** 6))
    assert "overlaps another GT more" in result.why_per_gt(2)[0]
    top1 = TaskAlignedAssigner(topk=1).assign(anchors, gts, torch.tensor([0, 1]), pred_scores=scores,
                                              pred_boxes=preds)
    assert top1.gt_inds.tolist() == [0, 1, 2, 0]
    assert top1.extras["pair_reasons"][0, 2] == Reason.NOT_TOPK_ALIGNED
    assert top1.reasons[0] == Reason.NOT_TOPK_ALIGNED


@pytest.mark.parametrize("num_gts, num_priors", [(0, 4), (2, 0), (0, 0)])
def test_empty_task_aligned_assignments_are_shaped(R, num_gts, num_priors):
    anchors = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]])[:num_priors]
    gts = torch.tensor([[0.0, 0, 10, 10], [4, 4, 16, 16]])[:num_gts]
    result = TaskAlignedAssigner().assign(anchors, gts, torch.zeros(num_gts, dtype=torch.long),
                                          pred_scores=torch.full((num_priors, 3), 0.5), pred_boxes=anchors)
    assert result.gt_inds.tolist() == [0] * num_priors and result.max_overlaps.tolist() == [0.0] * num_priors
    assert result.extras["pair_reasons"].shape == (num_gts, num_priors)
    assert R["assigner"]["no_priors"]["gt_inds"].numel() == 0


def _head_setup(R, epoch):
    from detengine.builder import build_head_core
    ref = R["head"]
    core = build_head_core(dict(type="TOOD", bbox_head=ref["head"], train_cfg=ref["train_cfg"], test_cfg=ref["test_cfg"]))
    core.set_epoch(epoch)
    scores, boxes = head_outputs(R)
    pixels = _pixel_boxes(R, boxes)
    image = tuple(R["meta"]["image"])
    priors = [core.priors(image, pad_shape=tuple(p)) for p in R["meta"]["pad_shapes"]]
    targets = [core.targets(p, g["bboxes"], g["labels"], tuple(s), cls_scores=c, bbox_preds=b)
               for p, g, s, c, b in zip(priors, R["meta"]["gts"], R["meta"]["img_shapes"], scores, pixels, strict=True)]
    return core, priors, targets, scores, pixels


def test_tood_targets_match_mmdet(R):
    """After the initial epochs: labels, label weights (0 past pad_shape), positives exactly; GT
    boxes and the per-GT normalised alignment metrics within the ULP budget."""
    _, _, targets, _, _ = _head_setup(R, 4)
    for t, ref in zip(targets, R["head"]["targets"], strict=True):
        pos = ref["pos_inds"]
        assert_ulp_close(t.labels, ref["labels"].long(), what="labels")
        assert_ulp_close(t.label_weights.to(torch.int8), ref["label_weights"], what="label weights")
        assert_ulp_close(t.sampling_result.pos_inds, pos, what="positives")
        assert_ulp_close(t.bbox_targets[pos], ref["bbox_targets"], what="GT boxes")
        assert_ulp_close(t.extras["alignment_metrics"][pos], ref["norm_metrics"], what="normalised metrics")


@pytest.mark.parametrize("epoch", [0, 4])
def test_tood_losses_match_mmdet(R, epoch):
    """Epoch 0 (ATSS, focal on probabilities, centerness-weighted GIoU) and epoch 4 (task-aligned,
    QFL on the normalised metrics, metric-weighted GIoU), summed over levels as mmdetection."""
    core, priors, targets, scores, pixels = _head_setup(R, epoch)
    norm = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    per_image = [core.loss_image(c, b, p, t, norm) for c, b, p, t in zip(scores, pixels, priors, targets, strict=True)]
    for key, expected in R["head"]["loss"][epoch].items():
        torch.testing.assert_close(sum(loss.terms[key] for loss in per_image), torch.tensor(expected), rtol=1e-5,
                                   atol=1e-6, msg=key)
    for loss in per_image:
        torch.testing.assert_close(loss.bbox_per_prior.sum(), loss.terms["loss_bbox"], rtol=1e-5, atol=1e-6)


def test_tood_detections_match_mmdet(R):
    core, priors, _, scores, pixels = _head_setup(R, 4)
    for i, expected in enumerate(R["head"]["predict"]):
        result = core.predict(scores[i], pixels[i], priors[i], tuple(R["meta"]["img_shapes"][i]))
        assert_ulp_close(result.labels, expected["labels"], what="labels")
        torch.testing.assert_close(result.scores, expected["scores"], rtol=1e-5, atol=1e-6)
        assert_boxes_close(result.boxes, expected["bboxes"])


@pytest.mark.parametrize("anchor_type", ["anchor_free", "anchor_based"])
def test_tood_head_network_matches_mmdet(R, anchor_type):
    """mmdetection's names in its order; with the same weights the same class probabilities and
    boxes on every level (the reference samples with torchvision's deform_conv2d, as DetScope)."""
    from detengine.builder import build_head_core
    from detengine.models.tood import TOODHeadModule
    from tests.engine.fixtures.make_resnet_styles_reference import filled
    ref = R["module"][anchor_type]
    head = dict(R["head"]["head"], anchor_type=anchor_type)
    core = build_head_core(dict(type="TOOD", bbox_head=head, train_cfg=R["head"]["train_cfg"]))
    module = TOODHeadModule.from_config(head, in_channels=8, num_classes=4, prior_generator=core.prior_generator,
                                        bbox_coder=core.bbox_coder).eval()
    assert [(k, list(v.shape)) for k, v in module.state_dict().items()] == [tuple(n) for n in ref["names"]]
    module.load_state_dict(filled(dict(module.state_dict())))
    feats = [det_randn((1, 8, h, w), 9980 + i) for i, (h, w) in enumerate(featmap_sizes())]
    with torch.no_grad():
        outs = [module.forward_single(f, i) for i, f in enumerate(feats)]
    for (cls, boxes), ref_cls, ref_boxes in zip(outs, ref["cls"], ref["boxes"], strict=True):
        torch.testing.assert_close(cls, ref_cls, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(boxes, ref_boxes, rtol=1e-4, atol=1e-5)


def test_mmdetections_tood_files_build_or_are_refused(R):
    from detengine.builder import ConfigBuildError
    from detengine.models import build_detector
    for name, ref in R["configs"].items():
        if "dconv" in name:
            with pytest.raises(ConfigBuildError, match="dcn"):
                build_detector(ref["model"])
            continue
        with torch.device("meta"):
            model = build_detector(ref["model"]).eval()
            feats = model.neck(model.backbone(torch.zeros(1, 3, *R["meta"]["config_input"])))
        numel = [sum(p.numel() for p in m.parameters()) for m in (model, model.backbone, model.neck, model.head)]
        assert numel == [ref["params"], ref["backbone_params"], ref["neck_params"], ref["head_params"]], name
        assert [list(f.shape[1:]) for f in feats] == ref["feature_shapes"]


def test_a_tiny_tood_trains_a_step_in_both_stages():
    """A ResNet-18 TOOD of the shipped layout: the initial (ATSS) and the task-aligned stage give
    finite losses and gradients; set_epoch switches them, as mmdetection's epoch does."""
    from detengine.config import load_config
    from detengine.models import build_detector
    from detengine.shipped import find_config
    model_cfg = load_config(find_config("tood_r50_fpn_coco")).to_dict()["model"]
    tiny = {**model_cfg, "backbone": {**model_cfg["backbone"], "depth": 18, "init_cfg": None},
            "neck": {**model_cfg["neck"], "in_channels": [64, 128, 256, 512], "out_channels": 32},
            "bbox_head": {**model_cfg["bbox_head"], "in_channels": 32, "feat_channels": 32, "stacked_convs": 2,
                          "num_classes": 3}}
    torch.manual_seed(0)
    model = build_detector(tiny).train()
    model.backbone.requires_grad_(False)          # the head's gradients are the point; saves 80 %
    batch = {"images": torch.randn(2, 3, 64, 96),
             "gt_boxes": [torch.tensor([[10.0, 12.0, 50.0, 60.0]]), torch.zeros(0, 4)],
             "gt_labels": [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]}
    for epoch, assigner in ((0, "ATSSAssigner"), (4, "TaskAlignedAssigner")):
        model.core.set_epoch(epoch)
        model.zero_grad()
        losses, trace = model.loss(batch, trace_index=0)
        total = sum(losses.values())
        total.backward()
        assert torch.isfinite(total) and model.head.tood_reg.weight.grad.abs().sum() > 0
        assert trace.assigner_name == assigner and trace.assign_result.num_pos > 0
        assert ("assign_metrics" in trace.assign_result.extras) == (assigner == "TaskAlignedAssigner")


def test_normalised_alignment_metrics_equal_mmdetections_loop_bit_for_bit():
    """The per-GT maxima in one scatter (no launches per GT) against mmdetection's loop over the GTs:
    same elementwise operations, so equal bits; ties, one positive per GT, GT ids with gaps."""
    from detengine.heads.tood import normalised_alignment_metrics

    def loop(metrics, ious, pos_gt):
        out = metrics.new_zeros(metrics.shape)
        for gt in torch.unique(pos_gt):
            mine = pos_gt == gt
            out[mine] = metrics[mine] / (metrics[mine].max() + 10e-8) * ious[mine].max()
        return out
    g = torch.Generator().manual_seed(5)
    for n, num_gt in [(1, 1), (7, 3), (200, 40), (500, 5)]:
        metrics = torch.rand(n, generator=g) ** 3
        metrics[: n // 4] = metrics[0]                        # ties
        ious = torch.rand(n, generator=g)
        pos_gt = torch.randint(0, num_gt, (n,), generator=g) * 2       # ids with gaps
        assert torch.equal(normalised_alignment_metrics(metrics, ious, pos_gt), loop(metrics, ious, pos_gt))
    empty = torch.zeros(0)
    assert normalised_alignment_metrics(empty, empty, torch.zeros(0, dtype=torch.long)).shape == (0,)
