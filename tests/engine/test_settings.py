"""What a config's training parts turn into, and what is refused or reported instead of ignored."""
from __future__ import annotations

import pytest
import torch

from detengine.train.events import EventBus
from detengine.train.optim import build_optimizer, param_groups
from detengine.train.settings import config_warnings, settings_from_config
from detengine.train.trainer import Trainer

from .fixtures.tiny_models import tiny_model


def _cfg(**parts) -> dict:
    return {"optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 0.01}}, **parts}


def test_optimizer_arguments_reach_the_optimizer():
    s = settings_from_config(_cfg(optim_wrapper={"optimizer": {"type": "AdamW", "lr": 0.01, "betas": [0.8, 0.9],
                                                               "eps": 1e-6, "amsgrad": True},
                                                 "clip_grad": {"max_norm": 5, "norm_type": 1}}))
    group = build_optimizer(tiny_model(), s).param_groups[0]
    assert (group["betas"], group["eps"], group["amsgrad"], group["weight_decay"]) == ((0.8, 0.9), 1e-6, True, 0.01)
    assert (s.grad_clip, s.grad_clip_norm_type) == (5, 1.0)
    sgd = settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "nesterov": True,
                                                                "momentum": 0.9}}})
    group = build_optimizer(tiny_model(), sgd).param_groups[0]
    assert group["nesterov"] and group["weight_decay"] == 0  # SGD's own default when the config has none
    with pytest.raises(ValueError, match="no argument 'betas'"):
        settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "betas": (0.9, 0.99)}}})


def test_custom_keys_with_list_values_and_keys_that_match_nothing():
    notes = []
    groups = param_groups(tiny_model(), {"custom_keys": {"3.": {"lr_mult": 0.5, "betas": [0.8, 0.9]},
                                                         "bbox_head.cls": {"lr_mult": 2.0}}}, 0.1, 0.01, notes)
    assert any(g.get("betas") == [0.8, 0.9] and g["lr"] == 0.05 for g in groups)
    assert len(notes) == 1 and "'bbox_head.cls' matches no parameter" in notes[0]


def test_bbox_head_keys_reach_our_head():
    from detengine.models import build_detector
    from detengine.train.runner import load_cfg

    from .runs import CONFIGS
    model = build_detector(load_cfg(CONFIGS / "rtmdet_tiny_coco.py")["model"])
    notes = []
    groups = param_groups(model, {"custom_keys": {"bbox_head": {"lr_mult": 0.1}}}, 0.004, 0.05, notes)
    head = {id(p) for p in model.head.parameters()}
    slow = [g for g in groups if g.get("lr") == pytest.approx(0.0004)]
    assert not notes and {id(p) for g in slow for p in g["params"]} == head


def test_evaluation_follows_val_begin_and_dynamic_intervals():
    s = settings_from_config(_cfg(train_cfg=dict(max_epochs=12, val_interval=5, val_begin=3,
                                                 dynamic_intervals=[(8, 2), (11, 1)])))
    trainer = Trainer.__new__(Trainer)  # only the interval rule
    trainer.s = s
    done = []
    for epoch in range(1, 13):
        trainer.epoch = epoch
        if trainer._evaluate_now():
            done.append(epoch)
    assert done == [5, 8, 10, 11, 12]  # every 5 from 3 on; every 2 from 8; every 1 from 11; and the last


def test_refused_and_reported():
    with pytest.raises(ValueError, match="more than one EMAHook"):
        settings_from_config(_cfg(custom_hooks=[dict(type="EMAHook"), dict(type="EMAHook")]))
    with pytest.raises(ValueError, match="takes no gamma"):
        settings_from_config(_cfg(custom_hooks=[dict(type="EMAHook", gamma=10)]))
    with pytest.raises(ValueError, match="clip_grad"):
        settings_from_config(_cfg(optim_wrapper={"optimizer": {"type": "SGD"}, "clip_grad": {"clip_value": 1}}))
    s = settings_from_config(_cfg(optim_wrapper={"type": "AmpOptimWrapper", "dtype": "bfloat16",
                                                 "optimizer": {"type": "SGD", "lr": 0.1}},
                                  auto_scale_lr=dict(enable=True, base_batch_size=16)))
    assert (s.amp_dtype, s.auto_scale_base_batch) == ("bfloat16", 16)
    cfg = _cfg(model=dict(backbone=dict(norm_cfg=dict(type="SyncBN"))),
               default_hooks=dict(checkpoint=dict(interval=1, max_keep_ckpts=3)))
    notes = config_warnings(cfg, distributed=True, cuda=False)
    assert any("SyncBN" in n for n in notes) and any("only last.pth" in n for n in notes)
    assert not any("SyncBN" in n for n in config_warnings(cfg, distributed=False))
    notes = config_warnings(_cfg(train_dataloader=dict(batch_size=2, dataset=dict(ann_file="a.json")),
                                 val_evaluator=dict(metric="proposal")))
    assert any("train_dataloader.dataset is not read" in n for n in notes) and any("proposal" in n for n in notes)


def test_auto_scale_lr_scales_with_the_total_batch(tmp_path):
    from .runs import tiny_tinyssd_cfg
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    cfg["optim_wrapper"] = {"optimizer": {"type": "SGD", "lr": 0.04, "momentum": 0.9, "weight_decay": 5e-4}}
    cfg["auto_scale_lr"] = dict(enable=True, base_batch_size=12)
    events = EventBus()
    from detengine.train.runner import train_from_config
    train_from_config(cfg, max_iters=1, work_dir=tmp_path / "run", events=events, console=False)
    it = next(e for e in events.history if e["type"] == "iter")
    assert it["lr"] == pytest.approx(0.04 * 6 / 12)  # 1 process x batch 6 against a base of 12
    assert any(e["type"] == "warning" and "auto_scale_lr" in e["message"] for e in events.history)
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["settings"]["lr"] == pytest.approx(0.02)


def test_a_checkpoint_that_does_not_fit_says_why(tmp_path):
    from detengine.models import build_detector
    from detengine.train.checkpoint import load_state_checked
    from detengine.train.runner import load_cfg

    from .runs import CONFIGS
    cfg = load_cfg(CONFIGS / "rtmdet_tiny_coco.py")["model"]
    model = build_detector(cfg)
    state = dict(model.state_dict())
    state["neck.top_down_blocks.0.attention.fc.weight"] = torch.zeros(192, 192, 1, 1)  # the old neck
    with pytest.raises(ValueError, match="older DetScope whose neck had channel attention"):
        load_state_checked(model, state, "old.pth")
    other = build_detector(dict(cfg, bbox_head=dict(cfg["bbox_head"], num_classes=3))).state_dict()
    with pytest.raises(ValueError, match=r"other.pth does not fit this model: .* of another shape"):
        load_state_checked(model, other, "other.pth")


def test_a_shortened_run_says_what_of_the_config_will_not_happen():
    from detengine.train.runner import load_cfg
    from detengine.train.settings import run_warnings

    from .runs import CONFIGS
    s = settings_from_config(load_cfg(CONFIGS / "rtmdet_tiny_coco.py"), max_epochs=10)  # the window's default
    notes = run_warnings(s, 4, [280])
    text = "\n".join(notes)
    assert "CosineAnnealingLR begins at epoch 150 and never starts" in text
    assert "LinearLR ends at iteration 1000: the warm-up never reaches the full rate" in text
    assert "dynamic_intervals from epoch 280 never applies" in text and "PipelineSwitchHook at epoch 280" in text
    assert not run_warnings(settings_from_config(load_cfg(CONFIGS / "rtmdet_tiny_coco.py")), 100, [280])


def test_evaluation_interval_switches_one_epoch_early_as_mmengine():
    s = settings_from_config(_cfg(train_cfg=dict(max_epochs=300, val_interval=10, dynamic_intervals=[(280, 1)])))
    trainer = Trainer.__new__(Trainer)
    trainer.s = s
    done = [e for e in range(270, 301) if (setattr(trainer, "epoch", e) or trainer._evaluate_now())]
    assert done == [270, 279] + list(range(280, 301))  # mmengine bisects on epoch + 1: 279 is evaluated too


def test_defaults_and_edge_values_as_mmengine():
    s = settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.02}}})
    assert (s.momentum, s.weight_decay, s.amp) == (0.0, None, False)  # torch's SGD defaults; fp32 unless AMP
    assert build_optimizer(tiny_model(), s).param_groups[0]["weight_decay"] == 0
    with pytest.raises(ValueError, match="base_wd should not be None"):
        build_optimizer(tiny_model(), settings_from_config(
            {"optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 0.01}, "paramwise_cfg": {"norm_decay_mult": 0}}}))
    amp = settings_from_config({"optim_wrapper": {"type": "AmpOptimWrapper", "loss_scale": 512.0,
                                                  "optimizer": {"type": "SGD", "lr": 0.02}}})
    assert (amp.amp, amp.loss_scale) == (True, 512.0)
    one = settings_from_config({"param_scheduler": dict(type="CosineAnnealingLR", eta_min=None, T_max=0),
                                "train_cfg": dict(max_epochs=4)})
    from detengine.train.schedule import LrSchedule
    rates = LrSchedule(one.schedulers, 2, 4).rates(0.1)  # T_max 0 -> end - begin, eta_min None -> 0
    assert rates[0] == 0.1 and rates[4] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="by_epoch=False"):
        settings_from_config({"default_hooks": dict(checkpoint=dict(interval=1000, by_epoch=False))})
    with pytest.raises(ValueError, match="needs max_norm"):
        settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD"}, "clip_grad": {"norm_type": 2}}})
    with pytest.raises(ValueError, match="accumulative_counts"):
        settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD"}, "accumulative_counts": 4}})


def test_a_group_at_lr_zero_stays_at_zero():
    from detengine.train.trainer import make_lr_scheduler
    s = settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}},
                              "param_scheduler": [dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=3),
                                                  dict(type="CosineAnnealingLR", eta_min=0.001, by_epoch=True)],
                              "train_cfg": dict(max_epochs=3)})
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.0}], lr=0.1)
    _, sched = make_lr_scheduler(opt, s, 2)  # a frozen group (lr_mult=0): no division by zero
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[1]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == 0.0 and seen[-1] > 0  # mmengine's absolute eta_min lifts it, as there


def test_resuming_with_other_settings_says_so(tmp_path):
    from detengine.train.runner import train_from_config

    from .runs import tiny_tinyssd_cfg
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    cfg["optim_wrapper"] = {"optimizer": {"type": "SGD", "lr": 0.04, "momentum": 0.9, "weight_decay": 5e-4}}
    train_from_config(cfg, max_iters=1, work_dir=tmp_path / "a", console=False)
    same, other = EventBus(), EventBus()
    train_from_config(cfg, max_iters=2, work_dir=tmp_path / "b", console=False, events=same,
                      resume=tmp_path / "a" / "last.pth")
    train_from_config(cfg, max_iters=2, batch_size=4, work_dir=tmp_path / "c", console=False, events=other,
                      resume=tmp_path / "a" / "last.pth")
    assert not [e for e in same.history if e["type"] == "warning"]
    warning = next(e["message"] for e in other.history if e["type"] == "warning")
    assert "batch_size: 6 -> 4" in warning


def test_cli_amp_on_cpu_says_float32(tmp_path, capsys):
    from detengine.cli import main
    from detengine.config import Config

    from .runs import tiny_tinyssd_cfg
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(Config.from_dict(tiny_tinyssd_cfg(tmp_path / "data")).pretty_text())
    assert main(["train", str(cfg_file), "--amp", "--max-iters", "1", "--device", "cpu",
                 "--work-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "[warning] mixed precision (AmpOptimWrapper / --amp) is used on CUDA only" in out
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["settings"]["amp"] is True


@torch.no_grad()
def test_an_mmdetection_rtmdet_checkpoint_loads_and_gives_mmdetections_outputs(tmp_path):
    """mmdetection's own parameter names (``bbox_head``, ``backbone.stage1``...) and checkpoint
    layout (``state_dict``, ``meta.dataset_meta.classes``) load into our RTMDet, which then gives
    the head outputs mmdetection gave for the same weights."""
    from pathlib import Path

    from detengine.project_eval import checkpoint_class_names
    from detengine.train.runner import _model_from_checkpoint

    from .fixtures.det_random import det_fill_state, det_randn
    from .runs import CONFIGS
    ref = torch.load(Path(__file__).parent / "fixtures" / "mmengine_optim_reference.pt",
                     weights_only=True)["rtmdet_forward"]
    from detengine.models import build_detector
    from detengine.train.runner import load_cfg
    ours = build_detector(load_cfg(CONFIGS / "rtmdet_tiny_coco.py")["model"]).state_dict()
    values = det_fill_state(dict(zip(ref["keys"], ours.values(), strict=True)))  # mmdetection's names, our tensors' types
    state = {"data_preprocessor.mean": torch.zeros(3, 1, 1), **values}        # mmdetection's names, in its order
    classes = [f"class{i}" for i in range(80)]
    path = tmp_path / "rtmdet_tiny_mmdet.pth"
    torch.save({"meta": {"dataset_meta": {"classes": classes}, "epoch": 300}, "state_dict": state}, path)
    assert checkpoint_class_names(path) == classes
    _, model = _model_from_checkpoint(CONFIGS / "rtmdet_tiny_coco.py", path, torch.device("cpu"))
    model.eval()
    cls, reg, _ = model(det_randn(tuple(ref["input_shape"]), ref["input_seed"]))
    want = torch.cat([c.permute(0, 2, 3, 1).reshape(1, -1, c.shape[1]) for c in ref["cls"]], 1)
    torch.testing.assert_close(cls, want, rtol=1e-5, atol=1e-5)


def test_a_run_lists_the_config_keys_it_does_not_act_on(tmp_path, capsys):
    from detengine.train.runner import train_from_config
    from detengine.train.settings import keys_not_acted_on

    from .runs import tiny_tinyssd_cfg
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    cfg.update(visualizer=dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")]),
               tta_model=dict(type="DetTTAModel"), log_level="INFO", max_epochs=3,
               my_thing=dict(type="SomethingUnknown"),
               default_hooks=dict(checkpoint=dict(interval=1), logger=dict(type="LoggerHook", interval=7),
                                  visualization=dict(type="DetVisualizationHook"), profiler=dict(type="MyHook")))
    unused = keys_not_acted_on(cfg)
    assert unused == ["visualizer", "log_level", "tta_model", "my_thing", "default_hooks.visualization",
                      "default_hooks.profiler"]                # max_epochs: a variable, not a key of its own
    assert settings_from_config(cfg).log_interval == 7           # the logger hook's interval acts
    events = EventBus()
    train_from_config(cfg, max_iters=1, work_dir=tmp_path / "run", events=events, console=True)
    said = [e["message"] for e in events.history if e["type"] == "warning" and "does not act on" in e["message"]]
    assert len(said) == 1 and all(k in said[0] for k in unused)
    assert "does not act on" in (tmp_path / "run" / "log.jsonl").read_text()
    assert capsys.readouterr().out.count("does not act on") == 1
