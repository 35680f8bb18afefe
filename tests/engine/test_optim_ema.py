"""Optimiser parameter groups (``paramwise_cfg``), EMA and the whole RTMDet-tiny network against
the real mmengine / mmdetection numbers (fixtures/make_mmengine_optim_reference.py), and how a
run uses them."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detengine.config import Config
from detengine.models import build_detector
from detengine.project_eval import checkpoint_class_names
from detengine.train.ema import ModelEMA
from detengine.train.events import EventBus, read_jsonl
from detengine.train.optim import param_groups
from detengine.train.runner import config_warnings, load_cfg, settings_from_config, train_from_config
from tests.floats import assert_ulp_close

from .fixtures.det_random import det_fill_state, det_randn
from .fixtures.tiny_models import tiny_model
from .runs import tiny_tinyssd_cfg

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "resources" / "configs"
REF = torch.load(Path(__file__).parent / "fixtures" / "mmengine_optim_reference.pt", weights_only=True)


def _per_param(model, groups) -> list[tuple[list[int], float, float]]:
    """(shape, lr, weight_decay) of every trained parameter in model order (mmengine's order)."""
    opts = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return [(list(p.shape), *opts[id(p)]) for p in model.parameters() if p.requires_grad]


def _groups(model, paramwise, lr, wd):
    groups = param_groups(model, paramwise, lr, wd)
    for g in groups:  # what torch.optim fills in for groups without their own value
        g.setdefault("lr", lr)
        g.setdefault("weight_decay", wd)
    return groups


def test_paramwise_rules_match_mmengine():
    model = tiny_model()
    got = _per_param(model, _groups(model, dict(REF["tiny_paramwise"]), 0.1, 0.01))
    want = [(list(s), lr, wd) for s, lr, wd in REF["groups_tiny"]]
    assert len(got) == len(want)
    for (gs, glr, gwd), (ws, wlr, wwd) in zip(got, want, strict=True):
        assert gs == ws and glr == pytest.approx(wlr, rel=1e-12) and gwd == pytest.approx(wwd, rel=1e-12)


def test_rtmdet_parameter_groups_match_mmdetection():
    cfg = load_cfg(CONFIGS / "rtmdet_tiny_coco.py")
    model = build_detector(cfg["model"])
    opt = cfg["optim_wrapper"]
    got = _per_param(model, _groups(model, opt["paramwise_cfg"], opt["optimizer"]["lr"],
                                    opt["optimizer"]["weight_decay"]))
    want = [(list(s), lr, wd) for s, lr, wd in REF["groups_rtmdet"]]
    assert got == want  # same parameters in the same order (shared convs once), same lr / decay each
    no_decay = sum(1 for _, _, wd in got if wd == 0)
    assert 0 < no_decay < len(got)  # norm weights and biases are exempt, conv weights are not


@torch.no_grad()
def test_rtmdet_network_equals_mmdetection():
    """Backbone + neck + head with the same weights give mmdetection's head outputs bit for bit
    (this caught channel attention in the neck's CSP layers, which mmdetection only has in the
    backbone)."""
    ref = REF["rtmdet_forward"]
    model = build_detector(load_cfg(CONFIGS / "rtmdet_tiny_coco.py")["model"])
    state = model.state_dict()
    assert [list(v.shape) for v in state.values()] == ref["shapes"]
    model.load_state_dict(det_fill_state(state))
    model.eval()
    cls, reg, _ = model(det_randn(tuple(ref["input_shape"]), ref["input_seed"]))
    want_cls = torch.cat([c.permute(0, 2, 3, 1).reshape(1, -1, c.shape[1]) for c in ref["cls"]], 1)
    want_reg = torch.cat([r.permute(0, 2, 3, 1).reshape(1, -1, 4) for r in ref["reg"]], 1)
    torch.testing.assert_close(cls, want_cls, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reg, want_reg, rtol=1e-5, atol=1e-5)


def test_paramwise_refuses_unknown_keys():
    with pytest.raises(ValueError, match="norm_decay"):
        param_groups(tiny_model(), {"norm_decay": 0}, 0.1, 0.01)


@pytest.mark.parametrize("ema_type", ["ExpMomentumEMA", "ExponentialMovingAverage", "MomentumAnnealingEMA"])
def test_ema_matches_mmengine_step_by_step(ema_type):
    run = REF["ema"]["runs"][ema_type]
    model = tiny_model()
    ema = ModelEMA(model, ema_type=ema_type, **run["kwargs"])
    for source, after in zip(REF["ema"]["sources"], run["after"], strict=True):
        model.load_state_dict(source)
        ema.update(model)
        for key, value in ema.module.state_dict().items():
            assert_ulp_close(value, after[key], what=f"{ema_type} {key}")


def test_ema_follows_the_model_until_begin_iter():
    model = tiny_model()
    ema = ModelEMA(model, ema_type="ExponentialMovingAverage", momentum=0.5, begin_iter=2)
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        ema.update(model, global_step=step)
        same = all(torch.equal(a, b) for a, b in zip(ema.module.parameters(), model.parameters(), strict=True))
        # step 0: before begin_iter, a copy; step 1: the first update, a copy; step 2: an average
        assert same == (step < 2)


# ---------------------------------------------------------------- a run with EMA and paramwise_cfg

@pytest.fixture(scope="module")
def ema_cfg(tmp_path_factory):
    cfg = tiny_tinyssd_cfg(tmp_path_factory.mktemp("synthetic"))
    cfg["optim_wrapper"] = {"optimizer": {"type": "AdamW", "lr": 0.004, "weight_decay": 0.05},
                            "paramwise_cfg": {"norm_decay_mult": 0, "bias_decay_mult": 0, "bypass_duplicate": True}}
    cfg["custom_hooks"] = [dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, update_buffers=True,
                                priority=49)]
    return cfg


def test_settings_read_ema_and_paramwise(ema_cfg):
    s = settings_from_config(ema_cfg)
    assert s.paramwise == {"norm_decay_mult": 0, "bias_decay_mult": 0, "bypass_duplicate": True}
    assert s.ema == {"ema_type": "ExpMomentumEMA", "momentum": 0.0002, "update_buffers": True}
    bad = dict(ema_cfg, custom_hooks=[dict(type="EMAHook", ema_type="SWA")])
    with pytest.raises(ValueError, match="ema_type"):
        settings_from_config(bad)


def test_unsupported_config_parts_are_named_not_ignored(ema_cfg):
    cfg = dict(ema_cfg, custom_hooks=ema_cfg["custom_hooks"] + [dict(type="SyncNormHook")],
               optim_wrapper=dict(ema_cfg["optim_wrapper"], accumulative_counts=4))
    warnings = config_warnings(cfg)
    assert any("SyncNormHook" in w for w in warnings) and any("accumulative_counts" in w for w in warnings)
    assert not config_warnings(ema_cfg)


@pytest.mark.slow
def test_ema_run_saves_averaged_weights_and_resumes_exactly(ema_cfg, tmp_path):
    full = EventBus()
    train_from_config(ema_cfg, epochs=2, work_dir=tmp_path / "full", events=full, console=False)
    train_from_config(ema_cfg, epochs=1, work_dir=tmp_path / "half", console=False)
    resumed = EventBus()
    train_from_config(ema_cfg, epochs=2, work_dir=tmp_path / "resumed", events=resumed, console=False,
                      resume=tmp_path / "half" / "last.pth")
    losses = [e["loss"] for e in full.history if e["type"] == "iter"]
    assert [e["loss"] for e in resumed.history if e["type"] == "iter"] == losses[2:]
    a = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
    assert a["ema"]["steps"] == b["ema"]["steps"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key  # the averaged weights
        assert torch.equal(a["ema"]["source_model"][key], b["ema"]["source_model"][key]), key
    changed = [k for k in a["model"] if a["model"][k].is_floating_point()
               and not torch.equal(a["model"][k], a["ema"]["source_model"][k])]
    assert changed  # ``model`` is the average, not the training weights


def test_checkpoint_carries_its_class_names(ema_cfg, tmp_path):
    train_from_config(ema_cfg, max_iters=1, work_dir=tmp_path / "run", console=False)
    ckpt = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    names = ckpt["meta"]["classes"]
    assert len(names) == len(ckpt["meta"]["category_ids"]) > 1
    moved = tmp_path / "elsewhere.pth"  # out of its run folder: no classes.txt beside it
    moved.write_bytes((tmp_path / "run" / "last.pth").read_bytes())
    assert checkpoint_class_names(moved) == names


# ---------------------------------------------------------------- torchrun: a NaN on one rank

@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_at_once(ema_cfg, tmp_path):
    cfg = dict(ema_cfg)
    cfg.pop("custom_hooks")
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(Config.from_dict(cfg).pretty_text())
    env = dict(os.environ, OMP_NUM_THREADS="1", DETSCOPE_FAULT_NAN_AT_STEP="1", DETSCOPE_FAULT_NAN_RANK="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29523", "-m",
           "detengine", "train", str(cfg_file), "--epochs", "3", "--work-dir", str(tmp_path / "run"),
           "--device", "cpu"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 180  # not the process group's 10-minute timeout
    log = read_jsonl(tmp_path / "run" / "log.jsonl")
    error = next(e for e in log if e["type"] == "error")
    assert error["global_step"] == 1 and "averaged over the ranks" in error["message"]
    assert proc.stderr.count("loss became NaN or infinite at epoch 2, iteration 1") == 2  # both ranks say so


@pytest.mark.slow
def test_torchrun_ranks_pause_resume_and_stop_together(ema_cfg, tmp_path):
    """The window's control file under torchrun: both ranks wait at the same iteration while it
    says pause (longer than a step), then run on, then stop together."""
    from detengine.train.control import write_control
    cfg = dict(ema_cfg)
    cfg.pop("custom_hooks")
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(Config.from_dict(cfg).pretty_text())
    control = tmp_path / "control"
    write_control(control, "pause")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29524", "-m",
           "detengine", "train", str(cfg_file), "--epochs", "50", "--work-dir", str(tmp_path / "run"),
           "--device", "cpu", "--control", str(control)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log_path = tmp_path / "run" / "log.jsonl"

    def events():
        return read_jsonl(log_path) if log_path.exists() else []

    try:
        deadline = time.monotonic() + 120
        while not any(e["type"] == "paused" for e in events()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        assert not any(e["type"] == "iter" for e in events())  # paused before the first iteration
        write_control(control, "run")
        while sum(e["type"] == "iter" for e in events()) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        write_control(control, "stop")
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    log = events()
    kinds = [e["type"] for e in log]
    assert "resumed" in kinds and "stop" in kinds and kinds.index("paused") < kinds.index("resumed")
    ckpt = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert ckpt["global_step"] == sum(k == "iter" for k in kinds) < 50  # stopped early, both ranks alike
