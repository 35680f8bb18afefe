"""The command line follows mmdetection's tools: --cfg-options (mmengine's DictAction values,
merge_from_dict keys), a bare --resume, --seed, --auto-scale-lr, --work-dir, and a --help with an
example and the shipped configs. Training is stubbed at Trainer.run: nothing trains here."""
from __future__ import annotations

import json

import pytest

from detengine.cli import main
from detengine.config import Config, ConfigError, apply_cfg_options, parse_cfg_options, parse_cfg_value
from detengine.shipped import shipped_configs
from detengine.train.trainer import Trainer

from .runs import tiny_tinyssd_cfg


@pytest.mark.parametrize("text, value", [
    ("1", 1), ("-2", -2), ("0.1", 0.1), ("1e-3", 1e-3), ("true", True), ("False", False), ("None", None),
    ("none", "none"), ("abc", "abc"), ("'quoted'", "quoted"),
    ("1,2,3", [1, 2, 3]),                                   # DictAction's docstring examples
    ("[a, b, c]", ["a", "b", "c"]),
    ("[(1, 2, 3), [a, b], c]", [(1, 2, 3), ["a", "b"], "c"]),
    ('"[1, 1, 1]"', [1, 1, 1]),                             # mmengine's tutorial: model.in_channels="[1, 1, 1]"
    ("[(a,b),(c,d)]", [("a", "b"), ("c", "d")]),            # the --cfg-options help: key="[(a,b),(c,d)]"
    ("(1333,800)", (1333, 800)), ("(1,)", (1,)), ("[]", []), ("()", ()), ("a,", ["a"]),
])
def test_values_are_read_as_mmengines_dictaction(text, value):
    got = parse_cfg_value(text)
    assert got == value and type(got) is type(value)


def test_options_merge_as_mmengines_merge_from_dict():
    # Config.merge_from_dict's docstring examples, and the config tutorial's optimizer.lr=0.1
    cfg = {"model": {"backbone": {"type": "ResNet"}}}
    options = parse_cfg_options(["model.backbone.depth=50", "model.backbone.with_cp=True"])
    assert apply_cfg_options(cfg, options) == {"model": {"backbone": {"type": "ResNet", "depth": 50, "with_cp": True}}}
    cfg = {"pipeline": [{"type": "LoadImage"}, {"type": "LoadAnnotations"}]}
    assert apply_cfg_options(cfg, parse_cfg_options(["pipeline.0.type=SelfLoadImage"])) == \
        {"pipeline": [{"type": "SelfLoadImage"}, {"type": "LoadAnnotations"}]}
    cfg = {"model": {"type": "CustomModel", "in_channels": [1, 2, 3]}, "optimizer": {"type": "SGD", "lr": 0.01}}
    out = apply_cfg_options(cfg, parse_cfg_options(["optimizer.lr=0.1", "model.in_channels=[1, 1, 1]"]))
    assert out == {"model": {"type": "CustomModel", "in_channels": [1, 1, 1]}, "optimizer": {"type": "SGD", "lr": 0.1}}
    assert cfg["optimizer"]["lr"] == 0.01                               # the input is left as it was
    assert parse_cfg_options(["a=1=2"]) == {"a": "1=2"}                 # split on the first '='
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_cfg_options(["novalue"])
    with pytest.raises(ConfigError, match="not an index"):
        apply_cfg_options(cfg, {"model.in_channels.7": 1})
    with pytest.raises(ConfigError, match="optimizer.lr is 0.01, not a dict"):
        apply_cfg_options(cfg, {"optimizer.lr.x": 1})


def test_cfg_options_change_what_inspect_builds(capsys):
    base = ["inspect", "--config", "tinyssd_synthetic", "--gt", "10,10,60,60,0", "--random-preds", "0"]
    assert main(base) == 0
    default = capsys.readouterr().out
    assert main([*base, "--cfg-options", "model.test_cfg.score_thr=0.99"]) == 0
    overridden = capsys.readouterr().out
    assert main([*base, "--score-thr", "0.99"]) == 0
    assert overridden == capsys.readouterr().out != default            # as the explicit flag, not the default


def test_bad_cfg_options_are_one_message(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "--config", "tinyssd_synthetic", "--cfg-options", "model.test_cfg"])
    assert exc.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err
    assert main(["inspect", "--config", "tinyssd_synthetic", "--cfg-options", "model.test_cfg.score_thr.x=1"]) == 2
    assert "not a dict or list" in capsys.readouterr().err


@pytest.fixture
def stub_training(monkeypatch):
    """Trainer.run and Trainer.resume record what they were given instead of training."""
    seen = {}

    def run(self):
        seen.update(lr=self.s.lr, seed=self.s.seed, batch_size=self.s.batch_size)
        self.save("last.pth")                                          # an untrained checkpoint, to evaluate
        return {}
    monkeypatch.setattr(Trainer, "run", run)
    monkeypatch.setattr(Trainer, "resume", lambda self, path: seen.update(resumed=str(path)))
    return seen


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(Config.from_dict(tiny_tinyssd_cfg(tmp_path / "data")).pretty_text())
    return str(path)


def test_bare_resume_continues_the_work_dirs_latest_checkpoint(tmp_path, tiny_config, stub_training, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pth").write_bytes(b"stub")                         # the trainer's latest checkpoint
    assert main(["train", tiny_config, "--device", "cpu", "--work-dir", str(run), "--resume"]) == 0
    assert stub_training["resumed"] == str(run / "last.pth")
    assert f"resume=True: continuing {run / 'last.pth'}" in capsys.readouterr().out
    stub_training.clear()
    assert main(["train", tiny_config, "--device", "cpu", "--work-dir", str(run), "--resume", "auto"]) == 0
    assert stub_training["resumed"] == str(run / "last.pth")       # 'auto' still works


def test_seed_auto_scale_lr_and_cfg_options_reach_the_trainer(tmp_path, tiny_config, stub_training, capsys):
    run = tmp_path / "run"
    assert main(["train", tiny_config, "--device", "cpu", "--work-dir", str(run), "--seed", "7", "--auto-scale-lr",
                 "--cfg-options", "auto_scale_lr.base_batch_size=8", "train_dataloader.batch_size=2",
                 "model.test_cfg.score_thr=0.3"]) == 0
    base_lr = 0.2                                                     # tinyssd_banana's SGD lr
    assert stub_training == {"lr": pytest.approx(base_lr * 2 / 8), "seed": 7, "batch_size": 2}
    assert "auto_scale_lr: lr 0.2 x 0.25 = 0.05" in capsys.readouterr().out
    saved = (run / "config.py").read_text()                           # the run keeps the config it ran
    assert "score_thr=0.3" in saved and "seed=7" in saved
    assert main(["train", tiny_config, "--device", "cpu", "--work-dir", str(run), "--auto-scale-lr"]) == 2
    assert "auto_scale_lr.base_batch_size=16" in capsys.readouterr().err  # says how to give the base batch


@pytest.mark.parametrize("command", ["inspect", "train", "eval", "export", "scan"])
def test_help_has_an_example_and_the_shipped_configs(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0
    assert f"example:\n  python -m detengine {command} " in text
    assert all(f"\n  {name}\n" in text + "\n" for name in shipped_configs()) and "tinyssd_synthetic" in text
    assert "--cfg-options" in text


def test_eval_work_dir_is_checked_first(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["eval", "tinyssd_synthetic", str(tmp_path / "none.pth"), "--work-dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "--work-dir" in err and "Traceback" not in err


def test_eval_applies_test_cfg_options_and_writes_metrics_to_the_work_dir(tmp_path, tiny_config, stub_training):
    run = tmp_path / "run"
    assert main(["train", tiny_config, "--device", "cpu", "--work-dir", str(run)]) == 0
    assert main(["eval", tiny_config, str(run / "last.pth"), "--device", "cpu", "--work-dir", str(tmp_path / "ev"),
                 "--cfg-options", "model.test_cfg.score_thr=0.99"]) == 0
    written = json.loads((tmp_path / "ev" / "eval_last.json").read_text())
    # an untrained TinySSD scores about 1/6 per class: thousands of detections pass the checkpoint's own
    # score_thr (0.01), none passes 0.99
    assert written["num_detections"] == 0 and written["num_images"] == 4
    assert set(written["metrics"]) >= {"AP", "AP50"} and written["checkpoint"] == str(run / "last.pth")
