"""Detectors, training loop, resume, NaN guard, stop, evaluation backends, export, torchrun."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detengine.evaluation import evaluate_coco
from detengine.models import build_detector
from detengine.train.events import EventBus, read_jsonl
from detengine.train.runner import (
    evaluate_checkpoint,
    export_checkpoint,
    load_cfg,
    settings_from_config,
    train_from_config,
)
from detengine.train.schedule import LrSchedule
from detengine.train.trainer import TrainingDiverged

from .runs import tiny_tinyssd_cfg

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "resources" / "configs"


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    """TinySSD on a 12 + 4 image synthetic set, 2 iterations per epoch."""
    cfg = tiny_tinyssd_cfg(tmp_path_factory.mktemp("synthetic"))
    cfg["optim_wrapper"] = {"optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}
    return cfg


def _losses(events):
    return [e["loss"] for e in events.history if e["type"] == "iter"]


# ---------------------------------------------------------------- detectors (the one-image overfit: test_overfit.py)
def test_detector_trace_equals_inspect():
    from detengine.trace import inspect
    model = build_detector(load_cfg(CONFIGS / "ssd300_coco.py")["model"])
    batch = {"images": torch.randn(1, 3, 300, 300), "gt_boxes": [torch.tensor([[30.0, 40, 150, 220]])],
             "gt_labels": [torch.tensor([4])]}
    losses, trace = model.loss(batch, trace_index=0)
    cls, reg, _ = model(batch["images"])
    again = inspect((300, 300), batch["gt_boxes"][0], batch["gt_labels"][0], model.model_cfg,
                    (cls[0].detach(), reg[0].detach()))
    torch.testing.assert_close(trace.loss.terms["loss_cls"].detach(), again.loss.terms["loss_cls"])
    torch.testing.assert_close(losses["loss_bbox"].detach(), again.loss.terms["loss_bbox"])
    assert torch.equal(trace.assign_result.gt_inds, again.assign_result.gt_inds)


# ---------------------------------------------------------------- the loop
def test_settings_follow_mmdetection_keys():
    s = settings_from_config(load_cfg(CONFIGS / "ssd300_coco.py"), max_epochs=3)
    assert (s.optimizer, s.lr, s.grad_clip, s.max_epochs) == ("SGD", 0.01, 35, 3)
    assert [x["type"] for x in s.schedulers] == ["LinearLR", "MultiStepLR"]
    s = settings_from_config(load_cfg(CONFIGS / "rtmdet_tiny_coco.py"))
    assert (s.optimizer, s.dynamic_intervals, s.eval_interval) == ("AdamW", ((280, 1),), 10)
    assert s.paramwise["norm_decay_mult"] == 0 and s.ema["ema_type"] == "ExpMomentumEMA"
    # mmdetection's RTMDet: warm-up over 1000 iterations, flat until epoch 150, cosine to eta_min at 300
    sched = LrSchedule(s.schedulers, 100, 300)
    assert sched.factor(0, 0.004) == pytest.approx(1e-5) and sched.factor(999, 0.004) == pytest.approx(1.0)
    assert sched.factor(149 * 100, 0.004) == pytest.approx(1.0)
    assert sched.factor(225 * 100, 0.004) == pytest.approx(0.525)  # eta_min 0.0002 = 5 % of 0.004
    assert sched.rates(0.004)[-1] == pytest.approx(0.0002, rel=1e-6)
    with pytest.raises(ValueError, match="StepLR"):
        settings_from_config({"param_scheduler": [dict(type="StepLR", step_size=3)]})
    with pytest.raises(ValueError, match="IterBasedTrainLoop"):
        settings_from_config({"train_cfg": dict(type="IterBasedTrainLoop", max_iters=100)})


@pytest.mark.slow
def test_train_resume_gives_the_same_next_losses(tiny_cfg, tmp_path):
    full = EventBus()
    train_from_config(tiny_cfg, epochs=2, work_dir=tmp_path / "full", events=full, console=False)
    first = EventBus()
    train_from_config(tiny_cfg, epochs=1, work_dir=tmp_path / "half", events=first, console=False)
    resumed = EventBus()
    train_from_config(tiny_cfg, epochs=2, work_dir=tmp_path / "resumed", events=resumed, console=False,
                      resume=tmp_path / "half" / "last.pth")
    assert _losses(first) == _losses(full)[:2]
    assert _losses(resumed) == _losses(full)[2:]
    log = read_jsonl(tmp_path / "full" / "log.jsonl")
    kinds = {e["type"] for e in log}
    assert {"start", "iter", "eval", "checkpoint", "end"} <= kinds
    it = next(e for e in log if e["type"] == "iter")
    assert {"epoch", "iter", "losses", "lr", "images_per_s", "eta_s"} <= set(it)
    assert (tmp_path / "full" / "best.pth").exists() and (tmp_path / "full" / "config.py").exists()


def test_nan_loss_stops_with_a_message_naming_step_and_term(tiny_cfg, tmp_path):
    events = EventBus()

    def poison(trainer):
        original = trainer.model.loss_from_outputs

        def loss_from_outputs(batch, outputs, trace_index=None, **kwargs):
            losses, trace = original(batch, outputs, trace_index, **kwargs)
            if trainer.global_step == 2:
                losses["loss_bbox"] = losses["loss_bbox"] * float("nan")
            return losses, trace
        trainer.model.loss_from_outputs = loss_from_outputs

    with pytest.raises(TrainingDiverged, match=r"epoch 2, iteration 1 .*loss_bbox=nan"):
        train_from_config(tiny_cfg, epochs=3, work_dir=tmp_path, events=events, console=False, trainer_hook=poison)
    error = next(e for e in events.history if e["type"] == "error")
    assert error["terms"] == ["loss_bbox"] and error["checkpoint"].endswith("last.pth")
    assert torch.load(tmp_path / "last.pth", weights_only=True)["epoch"] == 1  # the last good one


def test_stop_is_honoured_within_one_iteration(tiny_cfg, tmp_path):
    events = EventBus()
    holder = {}

    def keep(trainer):
        holder["t"] = trainer
        events.subscribe(lambda e: trainer.request_stop() if e["type"] == "iter" else None)

    summary = train_from_config(tiny_cfg, epochs=5, work_dir=tmp_path, events=events, console=False,
                                trainer_hook=keep)
    assert summary["stopped"] and len(_losses(events)) == 1
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["iter_in_epoch"]) == (0, 1)


@pytest.mark.slow
def test_eval_backends_agree_and_export_round_trips(tiny_cfg, tmp_path):
    train_from_config(tiny_cfg, epochs=2, work_dir=tmp_path, console=False)
    a = evaluate_checkpoint(tiny_cfg, tmp_path / "last.pth", backend="faster-coco-eval")
    b = evaluate_checkpoint(tiny_cfg, tmp_path / "last.pth", backend="pycocotools")
    for name in a.stats:
        assert a.stats[name] == pytest.approx(b.stats[name], abs=1e-6), name
    out = tmp_path / "preds.json"
    n = export_checkpoint(tiny_cfg, tmp_path / "last.pth", out)
    results = json.loads(out.read_text())
    assert n == len(results) > 0
    from pycocotools.coco import COCO
    gt = COCO(str(Path(tiny_cfg["data"]["synthetic"]["root"]) / "annotations" / "val.json"))
    dt = gt.loadRes(str(out))
    assert set(dt.getImgIds()) <= set(gt.getImgIds())
    assert {r["category_id"] for r in results} <= set(gt.getCatIds())
    again = evaluate_coco(gt.dataset, results, backend="pycocotools")
    assert again.stats["AP"] == pytest.approx(b.stats["AP"], abs=1e-6)


def test_malformed_coco_names_the_file_and_record(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
                               "categories": [{"id": 1, "name": "x"}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
                                               {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5]}]}))
    proc = subprocess.run([sys.executable, "-m", "detengine", "train", "tinyssd_banana", "--data", str(bad),
                           "--max-iters", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bad.json" in proc.stderr and "annotations[1]" in proc.stderr
