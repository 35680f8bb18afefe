"""The inspection trace, the shipped configs, the inspect CLI and the engine's Qt-freedom."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from detengine.assigners import Reason
from detengine.builder import ConfigBuildError, build_head_core
from detengine.cli import main as cli_main
from detengine.config import load_config
from detengine.trace import head_core_for, inspect, model_config, random_predictions

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "resources" / "configs"
SHIPPED = ["ssd300_coco", "ssd300_voc", "ssd512_coco", "ssd512_voc", "retinanet_r50_fpn_coco", "rtmdet_tiny_coco",
           "tinyssd_banana"]
EXPECTED_PRIORS = {"ssd300_coco": 8732, "ssd300_voc": 8732, "ssd512_coco": 24564, "ssd512_voc": 24564,
                   "retinanet_r50_fpn_coco": 76725, "rtmdet_tiny_coco": 8400, "tinyssd_banana": 5444}
GT = torch.tensor([[10.0, 20, 120, 200], [150, 150, 160, 158], [30, 40, 90, 70]])


def _labels(n):
    return torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_traces_with_and_without_predictions(name):
    model = model_config(CONFIGS / f"{name}.py")
    core = head_core_for(model)
    shape = (640, 640) if "retina" in name or "rtmdet" in name else None
    plain = inspect(shape, GT, _labels(3), model)
    assert len(plain.priors) == EXPECTED_PRIORS[name]
    assert plain.assign_result.gt_inds.shape == (len(plain.priors),)
    preds = random_predictions(core, plain.priors, seed=1)
    full = inspect(shape, GT, _labels(3), model, preds)
    terms = full.loss.terms
    assert all(torch.isfinite(v) for v in terms.values())
    # what the views draw sums to what the detector optimises
    torch.testing.assert_close(full.loss.cls_per_prior.sum(), terms["loss_cls"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full.loss.bbox_per_prior.sum(), terms["loss_bbox"], rtol=1e-5, atol=1e-6)
    b = full.loss_breakdown
    assert sum(b["per_level"]["loss_cls"]) == pytest.approx(b["terms"]["loss_cls"], rel=1e-5, abs=1e-6)
    assert b["cls_positive"] + b["cls_negative"] == pytest.approx(b["terms"]["loss_cls"], rel=1e-5, abs=1e-6)
    assert full.postprocess is not None and full.postprocess.boxes.shape[1] == 4
    json.dumps(full.to_json_dict())  # serialisable
    assert "GTs with no positive" in full.summary()


@pytest.mark.parametrize("name", SHIPPED)
def test_empty_ground_truth_is_all_negative_and_finite(name):
    model = model_config(CONFIGS / f"{name}.py")
    t = inspect(None if "ssd" in name else (320, 320), torch.zeros(0, 4), _labels(0), model, "init")
    assert (t.assign_result.gt_inds <= 0).all()
    assert all(torch.isfinite(v) for v in t.loss.terms.values())


def test_moving_a_gt_changes_the_positives():
    model = model_config(CONFIGS / "ssd300_coco.py")
    a = inspect((300, 300), GT[:1], _labels(1), model)
    b = inspect((300, 300), GT[:1] + 37.0, _labels(1), model)
    assert not torch.equal(a.assign_result.gt_inds > 0, b.assign_result.gt_inds > 0)


def test_coverage_flags_a_gt_no_anchor_covers():
    t = inspect((300, 300), torch.tensor([[100.0, 100, 103, 140]]), _labels(1), CONFIGS / "ssd300_coco.py")
    row = t.coverage.rows()[0]
    assert row["best_iou"] < 0.5 and row["num_iou_ge_05"] == 0 and row["num_pos"] == 1  # only the forced match
    assert t.assign_result.reasons[row["best_prior"]] == Reason.POS_LOW_QUALITY


def test_model_overrides_swap_the_assigner():
    overrides = {"train_cfg": {"assigner": {"_delete_": True, "type": "ATSSAssigner", "topk": 9}}}
    t = inspect((640, 640), GT, _labels(3), CONFIGS / "retinanet_r50_fpn_coco.py", model_overrides=overrides)
    assert t.assigner_name == "ATSSAssigner" and t.assign_result.num_pos > 0


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"gt_boxes must be \(N, 4\)"):
        inspect((300, 300), torch.zeros(3), _labels(3), CONFIGS / "ssd300_coco.py")
    with pytest.raises(ValueError, match="gt_labels must be in"):
        inspect((300, 300), GT[:1], torch.tensor([80]), CONFIGS / "ssd300_coco.py")
    with pytest.raises(ValueError, match="cls_scores must be"):
        inspect((300, 300), GT[:1], _labels(1), CONFIGS / "ssd300_coco.py", (torch.zeros(5, 81), torch.zeros(5, 4)))
    nan = torch.zeros(8732, 81)
    nan[3, 2] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        inspect((300, 300), GT[:1], _labels(1), CONFIGS / "ssd300_coco.py", (nan, torch.zeros(8732, 4)))
    model = model_config(CONFIGS / "ssd300_coco.py")
    bad = dict(model, train_cfg=dict(model["train_cfg"], assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5,
                                                                        neg_iou_thr=0.4, bogus=1)))
    with pytest.raises(ConfigBuildError, match="bogus"):
        build_head_core(bad)


def test_tinyssd_loss_equals_d2l_calc_loss():
    """d2l's multibox_target + calc_loss, in d2l's normalised coordinates, for one image."""
    model = model_config(CONFIGS / "tinyssd_banana.py")
    core = head_core_for(model)
    priors = core.priors((256, 256))
    gt = torch.tensor([[40.0, 60, 120, 150]])
    cls, reg = random_predictions(core, priors, seed=5, reg_std=1.0)
    t = inspect((256, 256), gt, _labels(1), model, (cls, reg))
    # d2l: labels rows [class, x1, y1, x2, y2] normalised; background class 0
    anchors = priors.normalized
    from tests.engine.test_assigners import d2l_assign_anchor_to_bbox
    amap = d2l_assign_anchor_to_bbox(gt / 256, anchors)
    mask = (amap >= 0).float().unsqueeze(-1).repeat(1, 4)
    cls_labels = torch.where(amap >= 0, torch.ones_like(amap), torch.zeros_like(amap))
    assigned = torch.zeros_like(anchors)
    assigned[amap >= 0] = (gt / 256)[amap[amap >= 0]]
    c_anc = torch.cat([(anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]], 1)
    c_bb = torch.cat([(assigned[:, :2] + assigned[:, 2:]) / 2, assigned[:, 2:] - assigned[:, :2]], 1)
    offset = torch.cat([10 * (c_bb[:, :2] - c_anc[:, :2]) / c_anc[:, 2:],
                        5 * torch.log(1e-6 + c_bb[:, 2:] / c_anc[:, 2:])], 1) * mask
    d2l_cls = F.cross_entropy(cls, cls_labels, reduction="none").mean()
    d2l_bbox = torch.abs(reg * mask - offset * mask).mean()
    torch.testing.assert_close(t.loss.terms["loss_cls"], d2l_cls)
    torch.testing.assert_close(t.loss.terms["loss_bbox"], d2l_bbox, rtol=1e-4, atol=1e-5)


def test_cli_inspect_prints_summary_and_writes_json(tmp_path, capsys):
    out = tmp_path / "trace.json"
    code = cli_main(["inspect", "--config", "ssd300_coco", "--image-size", "300", "300", "--gt", "10,20,120,200,0",
                     "--gt", "150,150,160,158,3", "--random-preds", "0", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "8732 anchors" in text and "level 0: stride 8x8, feature 38x38" in text and "loss (given" in text
    data = json.loads(out.read_text())
    assert data["schema"] == "detscope.trace/1"
    assert len(data["assign"]["gt_inds"]) == 8732 == sum(l["num_priors"] for l in data["priors"]["levels"])
    assert data["loss"]["terms"]["loss_cls"] > 0 and data["postprocess"]["counts"]["raw"] == 8732 * 80
    assert len(data["gt_coverage"]) == 2


def test_cli_rejects_bad_boxes_with_a_message():
    proc = subprocess.run([sys.executable, "-m", "detengine", "inspect", "--config", "ssd300_coco", "--gt", "5,5,1,1,0"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "x2 <= x1" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "detengine", "inspect", "--config", "nope"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and "ssd300_coco" in proc.stderr and "Traceback" not in proc.stderr


def test_engine_never_imports_qt():
    code = ("import sys, detengine, detengine.trace, detengine.cli, detengine.report;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph')];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shipped_configs_inherit_through_base():
    cfg = load_config(CONFIGS / "ssd512_voc.py").to_dict()
    gen = cfg["model"]["bbox_head"]["anchor_generator"]
    assert cfg["model"]["bbox_head"]["num_classes"] == 20 and gen["input_size"] == 512
    assert gen["basesize_ratio_range"] == (0.15, 0.9) and cfg["model"]["neck"]["last_kernel_size"] == 4


@pytest.mark.parametrize("name", SHIPPED)
def test_no_priors_at_all_is_handled(name):
    model = model_config(CONFIGS / f"{name}.py")
    levels = head_core_for(model).prior_generator.num_levels
    t = inspect((300, 300), GT[:1], _labels(1), model, "init", featmap_sizes=[(0, 0)] * levels)
    assert len(t.priors) == 0 and t.assign_result.gt_inds.shape == (0,)
    assert all(float(v) == 0.0 for v in t.loss.terms.values()) and t.postprocess.boxes.shape == (0, 4)
    assert t.coverage.rows()[0]["num_pos"] == 0


@pytest.mark.parametrize("name", ["ssd300_coco", "tinyssd_banana"])
def test_hard_negatives_are_the_mined_ones_hardest_first(name):
    """The Loss view's hard-negative list: exactly the mined priors, by descending CE, each at
    least the largest unmined CE; their losses plus the positives' give loss_cls; the class the
    model gives each is the argmax of its softmax with the background column left out."""
    model = model_config(CONFIGS / f"{name}.py")
    if name == "tinyssd_banana":
        model.setdefault("train_cfg", {})["neg_pos_ratio"] = 3    # d2l's loss mines nothing: the SSD option
    core = head_core_for(model)
    plain = inspect(None, GT, _labels(3), model)
    trace = inspect(None, GT, _labels(3), model, random_predictions(core, plain.priors, seed=3))
    rows = trace.hard_negatives()
    hard = trace.hard_negative_mask
    assert sorted(r["prior"] for r in rows) == hard.nonzero().view(-1).tolist()
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    ces = [r["ce"] for r in rows]
    assert ces == sorted(ces, reverse=True) and len(rows) == 3 * trace.assign_result.num_pos
    assert min(ces) >= rows[0]["cut_ce"] and rows[0]["negatives"] == int((trace.assign_result.gt_inds == 0).sum())
    pos = trace.assign_result.gt_inds > 0
    total = sum(r["loss"] for r in rows) + float(trace.loss.cls_per_prior[pos].sum())
    assert total == pytest.approx(float(trace.loss.terms["loss_cls"]), rel=1e-5)
    r = rows[0]
    probs = trace.cls_scores[r["prior"]].softmax(-1)
    fg = probs[1:] if trace.score_layout == "softmax_bg_first" else probs[:-1]
    assert r["class"] == int(fg.argmax()) and r["score"] == pytest.approx(float(fg.max()))
    assert r["best_iou"] == pytest.approx(float(trace.iou[:, r["prior"]].max()))
    assert inspect(None, GT, _labels(3), model).hard_negatives() == []      # no model, no loss, no list


@pytest.mark.parametrize("name", ["fcos_r50_fpn_coco", "atss_r50_fpn_coco", "gfl_r50_fpn_coco", "tood_r50_fpn_coco",
                                  "yolox_s_coco"])
def test_random_predictions_of_every_dense_head_give_a_finite_loss(name):
    """``--random-preds`` on each dense family: outputs in the head's own form (TOOD: probabilities
    and boxes; YOLOX: raw deltas), a finite loss whose per-prior parts sum to its terms."""
    model = model_config(CONFIGS / f"{name}.py")
    core = head_core_for(model)
    gt = torch.tensor([[40.0, 60.0, 300.0, 330.0], [350.0, 100.0, 420.0, 160.0]])
    plain = inspect((512, 512), gt, _labels(2), model)
    trace = inspect((512, 512), gt, _labels(2), model, random_predictions(core, plain.priors, seed=2))
    assert all(torch.isfinite(v) for v in trace.loss.terms.values()), trace.loss.terms
    assert trace.assign_result.num_pos > 0
    torch.testing.assert_close(trace.loss.cls_per_prior.sum(), trace.loss.terms["loss_cls"], rtol=1e-5, atol=1e-5)
