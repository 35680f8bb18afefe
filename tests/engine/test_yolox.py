"""SimOTA (YOLOX's assigner) against mmdetection 3.3.0 (``fixtures/make_yolox_reference.py``): gt_inds,
labels and matched IoUs of three settings on YOLOX's offset points, a no-GT image, a GT no point
reaches; the per-pair reasons by hand."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.assigners import Reason, SimOTAAssigner
from tests.engine.fixtures.det_random import det_randn, det_uniform
from tests.engine.fixtures.make_yolox_reference import offset_priors, predictions
from tests.floats import assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_yolox_reference.pt"


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("case", ["yolox", "tight", "wide"])
def test_simota_matches_mmdet(R, case):
    ref = R["assign"][case]
    priors = offset_priors()
    scores, boxes = predictions(det_randn, det_uniform)
    assigner = SimOTAAssigner(**ref["settings"])
    for img, (gt, expected) in enumerate(zip(R["meta"]["gts"], ref["images"], strict=True)):
        result = assigner.assign(priors, gt["bboxes"], gt["labels"], pred_scores=scores[img], pred_boxes=boxes[img])
        assert_ulp_close(result.gt_inds, expected["gt_inds"].long(), what="gt_inds")
        assert_ulp_close(result.labels, expected["labels"].long(), what="labels")
        assert_ulp_close(result.max_overlaps, expected["max_overlaps"], what="max_overlaps")
        pos = result.gt_inds > 0
        assert (result.reasons[pos] == Reason.POS_SIMOTA).all()
        if gt["bboxes"].numel():
            assert float(result.max_overlaps[~pos].max()) == -100000.0
            pair = result.extras["pair_reasons"]
            assert (pair.t()[pos].eq(Reason.POS_SIMOTA).sum(1) == 1).all()      # one GT keeps each positive


def test_a_gt_no_point_reaches_leaves_everything_negative(R):
    ref = R["assign"]["no_candidate"]
    scores, boxes = predictions(det_randn, det_uniform)
    result = SimOTAAssigner().assign(offset_priors(), torch.tensor([[1000.0, 1000.0, 1010.0, 1010.0]]),
                                     torch.tensor([1]), pred_scores=scores[0], pred_boxes=boxes[0])
    assert_ulp_close(result.gt_inds, ref["gt_inds"].long(), what="gt_inds")
    assert_ulp_close(result.max_overlaps, ref["max_overlaps"], what="max_overlaps (0, not -1e5)")
    assert (result.reasons == Reason.NOT_SIMOTA_CANDIDATE).all()


def test_why_a_point_is_not_simota_positive():
    """By hand, one level of stride 8, radius 1 (centre regions +- 8 px): GT0 (0..40) with centre 20,
    GT1 (30..50) with centre 40. Points at x = 4, 20, 36, 44, 60 (y = 20). Every prediction is the
    GT0 box except the x = 36 one (GT1's box), scores 0.5 everywhere; k = 1 for both GTs."""
    priors = torch.tensor([[x, 20.0, 8.0, 8.0] for x in (4.0, 20.0, 36.0, 44.0, 60.0)])
    gts = torch.tensor([[0.0, 0, 40, 40], [30, 0, 50, 40]])
    preds = torch.tensor([[0.0, 0, 40, 40]] * 5)
    preds[2] = gts[1]
    result = SimOTAAssigner(center_radius=1.0, candidate_topk=1).assign(
        priors, gts, torch.tensor([0, 1]), pred_scores=torch.full((5, 2), 0.5), pred_boxes=preds)
    assert result.gt_inds.tolist() == [0, 1, 2, 0, 0]
    pair = result.extras["pair_reasons"]
    # x = 4: inside GT0's box, outside its centre region (12..28): penalised; x = 60: no candidate
    assert pair[0].tolist() == [Reason.OUTSIDE_BOX_AND_CENTER, Reason.POS_SIMOTA, Reason.OUTSIDE_BOX_AND_CENTER,
                                Reason.OUTSIDE_BOX_AND_CENTER, Reason.NOT_SIMOTA_CANDIDATE]
    assert pair[1].tolist() == [Reason.OUTSIDE_BOX_AND_CENTER, Reason.OUTSIDE_BOX_AND_CENTER, Reason.POS_SIMOTA,
                                Reason.NOT_IN_SIMOTA_K, Reason.NOT_SIMOTA_CANDIDATE]
    assert result.reasons.tolist() == [Reason.NOT_IN_SIMOTA_K, Reason.POS_SIMOTA, Reason.POS_SIMOTA,
                                       Reason.NOT_IN_SIMOTA_K, Reason.NOT_SIMOTA_CANDIDATE]
    assert result.extras["dynamic_ks"].tolist() == [1, 1]


@pytest.mark.parametrize("num_gts, num_priors", [(0, 4), (2, 0), (0, 0)])
def test_empty_simota_assignments_are_shaped(num_gts, num_priors):
    priors = torch.tensor([[4.0, 4, 8, 8], [12, 4, 8, 8], [4, 12, 8, 8], [12, 12, 8, 8]])[:num_priors]
    gts = torch.tensor([[0.0, 0, 10, 10], [4, 4, 16, 16]])[:num_gts]
    result = SimOTAAssigner().assign(priors, gts, torch.zeros(num_gts, dtype=torch.long),
                                     pred_scores=torch.full((num_priors, 3), 0.5), pred_boxes=priors)
    assert result.gt_inds.tolist() == [0] * num_priors and result.max_overlaps.tolist() == [0.0] * num_priors
    assert result.extras["pair_reasons"].shape == (num_gts, num_priors)
