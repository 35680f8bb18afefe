"""The per-GT probe during training (issue "What no tool shows", part 1): its records are what the
debug trace shows for the same weights (a max-IoU head and RTMDet's prediction-weighted DSL), a
short run writes them at the interval and at the end, a resume appends without duplicates and
drops a killed run's unfinished future, the probe leaves training unchanged, and the reader lists
the starved GTs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detengine.api import ImageTracer, read_probe
from detengine.models import build_detector
from detengine.probe import (
    PROBE_FILE,
    PROBE_SET_FILE,
    TrainingProbe,
    check_probe_settings,
    probe_interval,
)
from detengine.train.data import build_data
from detengine.train.events import read_jsonl
from detengine.train.runner import load_cfg, settings_from_config, train_from_config

from .runs import CONFIGS, tiny_tinyssd_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(cfg: dict, num_classes: int, seed: int = 0):
    torch.manual_seed(seed)
    model_cfg = dict(cfg["model"], bbox_head=dict(cfg["model"]["bbox_head"], num_classes=num_classes))
    return build_detector(model_cfg), model_cfg


def _assert_records_equal_the_trace(cfg, bundle, probe, model, records):
    """Each probe GT's positives and mean per-prior losses over them, against the trace the debug
    views make of the same image with the same model (ImageTracer: test pipeline, boxes mapped)."""
    tracer = ImageTracer(cfg, num_classes=len(bundle.class_names), model=model)
    by_key = {(r["image"], r["gt"]): r for r in records}
    assert len(by_key) == len(records) == probe.num_gts > 0
    checked_losses = 0
    for n, im in enumerate(probe.images):
        pixels = bundle.train.dataset.load_sample(im.index).image
        trace = tracer.trace(("probe", n), pixels, im.boxes, im.labels).trace
        gt_inds, loss = trace.assign_result.gt_inds, trace.loss
        assert np.allclose(im.input_boxes, trace.gt_boxes.numpy(), atol=0.01)     # the sizes the window lists
        for k in range(len(im.boxes)):
            r = by_key[(n, k)]
            mine = gt_inds == k + 1
            assert r["pos"] == int(trace.coverage.num_pos[k]) == int(mine.sum())
            if r["pos"]:
                assert r["cls"] == pytest.approx(float(loss.cls_per_prior[mine].mean()), rel=1e-4, abs=1e-9)
                assert r["box"] == pytest.approx(float(loss.bbox_per_prior[mine].mean()), rel=1e-4, abs=1e-9)
                checked_losses += 1
            else:
                assert r["cls"] is None and r["box"] is None
    assert checked_losses > 0


def test_probe_records_equal_the_trace_for_the_same_weights(tmp_path):
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    bundle = build_data(cfg, seed=0)
    model, _ = _model(cfg, len(bundle.class_names))
    probe = TrainingProbe(tmp_path / "run", bundle.train.dataset, bundle.test_pipeline, interval=5, images=3)
    model.train()
    records = probe.measure(model)
    assert model.training                                       # the mode is restored
    _assert_records_equal_the_trace(cfg, bundle, probe, model, records)
    saved = json.loads((tmp_path / "run" / PROBE_SET_FILE).read_text())
    assert [im["index"] for im in saved["images"]] == [im.index for im in probe.images]
    assert saved["classes"] == bundle.class_names
    # the same seed chooses the same images; a resumed run keeps the saved set
    again = TrainingProbe(tmp_path / "run2", bundle.train.dataset, bundle.test_pipeline, interval=5, images=3)
    assert [im.index for im in again.images] == [im.index for im in probe.images]


def test_probe_with_a_prediction_weighted_assigner_uses_the_models_predictions(tmp_path):
    """RTMDet's dynamic soft label weighs the predictions: the probe's positives are those the
    trace finds with the same model (and differ from a freshly initialised head's)."""
    cfg = load_cfg(CONFIGS / "rtmdet_tiny_coco.py")
    tiny = tiny_tinyssd_cfg(tmp_path / "data")
    cfg["data"] = tiny["data"]
    cfg["test_pipeline"] = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(160, 160), keep_ratio=True),
                            dict(type="Pad", size=(160, 160), pad_val=dict(img=(114, 114, 114))),
                            dict(type="PackDetInputs")]
    bundle = build_data(cfg, seed=0)
    model, _ = _model(cfg, len(bundle.class_names), seed=1)
    with torch.no_grad():                 # a head that is not the init's: boxes of a few strides, varied scores
        for reg in model.head.rtm_reg:
            reg.bias.fill_(2.0)
            reg.weight.add_(torch.randn_like(reg.weight) * 0.05)
        for cls in model.head.rtm_cls:
            cls.weight.add_(torch.randn_like(cls.weight) * 0.5)
    probe = TrainingProbe(tmp_path / "run", bundle.train.dataset, bundle.test_pipeline, interval=5, images=2)
    records = probe.measure(model)
    _assert_records_equal_the_trace(cfg, bundle, probe, model, records)
    # the same priors are positive as in the model's trace, others than with an initial head's outputs
    with_model = ImageTracer(cfg, num_classes=len(bundle.class_names), model=model)
    untrained = ImageTracer(cfg, num_classes=len(bundle.class_names))
    differs = False
    for n, (im, trace) in enumerate(zip(probe.images, probe.traces(model))):
        pixels = bundle.train.dataset.load_sample(im.index).image
        mine = trace.assign_result.gt_inds
        assert torch.equal(mine, with_model.trace(n, pixels, im.boxes, im.labels).trace.assign_result.gt_inds)
        differs |= not torch.equal(mine, untrained.trace(n, pixels, im.boxes, im.labels).trace.assign_result.gt_inds)
    assert differs


# ---------------------------------------------------------------------------- during training
@pytest.fixture(scope="module")
def probed_runs(tmp_path_factory):
    """The tiny run (2 iterations an epoch) for 2 epochs with a probe every 3 iterations on 3
    images, resumed for a third epoch after a simulated kill left a cut line and a future; and
    the same 2 epochs without the probe."""
    root = tmp_path_factory.mktemp("probe")
    cfg = tiny_tinyssd_cfg(root / "data")
    cfg["probe"] = {"interval": 3, "images": 3}
    cfg["train_cfg"] = {"type": "EpochBasedTrainLoop", "max_epochs": 2, "val_begin": 100}     # no evaluation
    run = root / "run"
    first = train_from_config(cfg, epochs=2, work_dir=str(run), console=False, device="cpu")
    first_records = (run / PROBE_FILE).read_text()
    with open(run / PROBE_FILE, "a") as f:                       # what a kill after the checkpoint leaves
        f.write(json.dumps({"iter": 5, "epoch": 2, "image": 0, "gt": 0, "pos": 1, "cls": 0.1, "box": 0.1}) + "\n")
        f.write('{"iter": 5, "epoch": 2, "ima')
    train_from_config(cfg, epochs=3, work_dir=str(run), console=False, device="cpu", resume=str(run / "last.pth"))
    plain = dict(cfg, probe={"interval": 0})
    train_from_config(plain, epochs=2, work_dir=str(root / "plain"), console=False, device="cpu")
    return {"run": run, "plain": root / "plain", "first": first, "first_records": first_records}


def _per_iter(path: Path) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.setdefault(r["iter"], []).append((r["image"], r["gt"]))
    return out


def test_a_run_writes_probe_records_at_the_interval_and_at_the_end(probed_runs):
    run = probed_runs["run"]
    assert probed_runs["first"]["global_step"] == 4
    first = [json.loads(line) for line in probed_runs["first_records"].splitlines()]
    assert sorted({r["iter"] for r in first}) == [0, 3, 4]            # every 3 iterations, and the end
    num_gts = sum(len(im["boxes"]) for im in json.loads((run / PROBE_SET_FILE).read_text())["images"])
    assert len(first) == 3 * num_gts
    assert all(set(r) == {"iter", "epoch", "image", "gt", "pos", "cls", "box"} for r in first)
    probes = [e for e in read_jsonl(run / "log.jsonl") if e["type"] == "probe"]
    assert [e["global_step"] for e in probes] == [0, 3, 4, 6]
    assert all(e["records"] == num_gts and e["seconds"] > 0 for e in probes)
    note = [e for e in read_jsonl(run / "log.jsonl") if e.get("kind") == "probe"]
    assert note and f"3 training images ({num_gts} GTs) every 3 iterations" in note[0]["message"]


def test_resume_appends_without_duplicates_and_drops_a_killed_future(probed_runs):
    run = probed_runs["run"]
    per_iter = _per_iter(run / PROBE_FILE)                              # every line parses: the cut one is gone
    assert sorted(per_iter) == [0, 3, 4, 6]                             # 4 not probed twice, 5 (a future) dropped
    counts = {it: len(keys) for it, keys in per_iter.items()}
    assert len(set(counts.values())) == 1
    assert all(len(set(keys)) == len(keys) for keys in per_iter.values())
    kept = (run / PROBE_FILE).read_text()
    assert kept.startswith(probed_runs["first_records"])               # the first run's lines kept as they were
    history = read_probe(run)
    assert history.iterations == [0, 3, 4, 6] and history.interval == 3
    assert all(list(g.iters) == [0, 3, 4, 6] for g in history.gts)


def test_the_probe_leaves_training_unchanged(probed_runs):
    """Eval mode (no batch-norm update), no gradients, the RNG forked: the same losses as a run
    without it."""
    def losses(path):
        return [e["loss"] for e in read_jsonl(path / "log.jsonl") if e["type"] == "iter"][:4]
    assert losses(probed_runs["run"]) == pytest.approx(losses(probed_runs["plain"]), rel=1e-6)
    assert not (probed_runs["plain"] / PROBE_FILE).exists()
    assert any(e.get("kind") == "probe" and "probe.interval=0" in e["message"]
               for e in read_jsonl(probed_runs["plain"] / "log.jsonl"))


# ---------------------------------------------------------------------------- settings and reading
def test_probe_settings_and_the_auto_rule():
    assert check_probe_settings(None) == {"interval": "auto", "images": 16}
    assert check_probe_settings({"interval": 0}) == {"interval": 0, "images": 16}
    for bad in ({"interval": -1}, {"interval": "often"}, {"images": 0}, {"every": 3}):
        with pytest.raises(ValueError):
            check_probe_settings(bad)
    assert probe_interval("auto", 200, 25) == 25                       # at least once an epoch
    assert probe_interval("auto", 6000, 750) == 50                     # tinyssd_synthetic's 6,000 images
    assert probe_interval("auto", 10_000, 400) == 50
    assert probe_interval("auto", 10_001, 400) == 0                    # big splits (COCO's 118k): off
    assert probe_interval(7, 10 ** 6, 400) == 7 and probe_interval(0, 10, 2) == 0
    assert probe_interval("auto", 1000, 500, images=16, batch_size=2) == 200           # a probe of 8 batches
    assert probe_interval("auto", 1000, 30, images=16, batch_size=4) == 60             # every 2nd epoch
    cfg = tiny_tinyssd_cfg("/nonexistent", probe=True)
    assert settings_from_config(cfg).probe == {"interval": "auto", "images": 16}
    assert settings_from_config(dict(cfg, probe={"interval": 20})).probe == {"interval": 20, "images": 16}


def test_cli_probe_interval_reaches_the_settings(tmp_path, monkeypatch):
    from detengine.cli import main
    from detengine.config import Config
    from detengine.train.trainer import Trainer
    seen = {}
    monkeypatch.setattr(Trainer, "run", lambda self: seen.update(probe=self.s.probe, attached=self.probe) or {})
    config = tmp_path / "tiny.py"
    config.write_text(Config.from_dict(tiny_tinyssd_cfg(tmp_path / "data")).pretty_text())
    assert main(["train", str(config), "--device", "cpu", "--work-dir", str(tmp_path / "r1"),
                 "--probe-interval", "0"]) == 0
    assert seen["probe"]["interval"] == 0 and seen["attached"] is None
    assert main(["train", str(config), "--device", "cpu", "--work-dir", str(tmp_path / "r2"),
                 "--probe-interval", "7"]) == 0
    assert seen["attached"].interval == 7 and (tmp_path / "r2" / PROBE_SET_FILE).is_file()


def _write_history(run: Path, series: dict, boxes) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / PROBE_SET_FILE).write_text(json.dumps({
        "version": 1, "interval": 10, "classes": ["a", "b"],
        "images": [{"index": 4, "image_id": 5, "file_name": "x/five.jpg", "path": None, "height": 100, "width": 100,
                    "boxes": boxes, "labels": [0, 1, 1], "ignore": []}]}))
    lines = [json.dumps({"iter": it, "epoch": 0, "image": 0, "gt": k, "pos": p, "cls": None if not p else 0.5,
                         "box": None if not p else 0.25})
             for k, pos in series.items() for it, p in zip((0, 10, 20, 30), pos)]
    again = json.dumps({"iter": 30, "epoch": 0, "image": 0, "gt": 0, "pos": 2, "cls": 9.5, "box": 0.25})
    (run / PROBE_FILE).write_text("\n".join(lines) + "\n" + again + "\n" + '{"iter": 4')  # a rewrite, a cut line


def test_read_probe_lists_the_starved_gts(tmp_path):
    run = tmp_path / "run"
    _write_history(run, {0: [0, 0, 0, 2], 1: [0, 0, 3, 3], 2: [0, 0, 0, 0]},
                   [[0, 0, 50, 50], [10, 10, 14, 14], [0, 0, 30, 20]])
    h = read_probe(run)
    assert h.iterations == [0, 10, 20, 30] and len(h.gts) == 3
    g0 = h.gt(0, 0)
    assert list(g0.pos) == [0, 0, 0, 2] and np.isnan(g0.cls[:3]).all() and g0.box[3] == 0.25
    assert g0.cls[3] == 9.5 and h.gt(0, 1).cls[3] == 0.5                # a repeated record: the last one counts
    assert g0.class_name == "a" and h.gt(0, 1).class_name == "b" and g0.size == (50, 50)
    assert [(g.gt, g.zero_fraction) for g in h.starved(0.5)] == [(2, 1.0), (0, 0.75), (1, 0.5)]
    assert [g.gt for g in h.starved(0.75)] == [2, 0]
    assert [g.gt for g in h.starved(0.0)] == [2, 0, 1]                # all, most often starved first
    assert read_probe(tmp_path / "nothing") is None


@pytest.mark.slow
def test_under_torchrun_rank_0_probes_alone(tmp_path):
    """Two processes (torchrun, gloo): the run says so, logs each iteration once (rank 0), evaluates
    and saves; the probe runs on rank 0 only (no collective), once per due iteration. (Also the
    plain two-process run's test: one torchrun start, ~14 s, serves both.)"""
    import os
    import subprocess
    import sys

    from detengine.config import Config
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    cfg["probe"] = {"interval": 1, "images": 2}
    cfg["train_cfg"] = {"type": "EpochBasedTrainLoop", "max_epochs": 2, "val_begin": 2}
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(Config.from_dict(cfg).pretty_text())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531", "-m",
           "detengine", "train", str(cfg_file), "--work-dir", str(run), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_iter = _per_iter(run / PROBE_FILE)
    assert sorted(per_iter) == [0, 1, 2]                                # 1 iteration an epoch on 2 ranks, and the end
    assert len({len(keys) for keys in per_iter.values()}) == 1 and all(len(set(k)) == len(k) for k in per_iter.values())
    log = read_jsonl(run / "log.jsonl")
    assert [e["global_step"] for e in log if e["type"] == "probe"] == [0, 1, 2]
    assert "2 process(es)" in next(e for e in log if e["type"] == "start")["message"]
    # 12 images / 2 ranks / batch 6: one iteration an epoch, logged once (rank 0)
    assert [e["global_step"] for e in log if e["type"] == "iter"] == [0, 1]
    assert [e["epoch"] for e in log if e["type"] == "eval"] == [1] and (run / "last.pth").exists()   # 0-based: the 2nd
