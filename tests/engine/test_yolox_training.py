"""mmdetection's own YOLOX files (and the shipped ones, now the same) train here as mmdetection trains
them: ``detengine train <yolox file> --max-iters 3 --no-pretrained --cfg-options <tiny synthetic
data, 64 x 64>`` runs Mosaic / RandomAffine / MixUp in the MultiImageMixDataset, warms up
quadratically, and YOLOXModeSwitchHook skips those steps and adds the L1 loss at its epoch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from detengine.cli import main as cli_main
from detengine.config import apply_cfg_options, load_config
from detengine.shipped import find_config
from tests.engine.test_yolox_mix import MMDET_YOLOX, cfg_options

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py

SKIPPED = ("Mosaic", "RandomAffine", "MixUp")


def _config_path(name: str) -> Path:
    return MMDET_YOLOX / f"{name}.py" if "8xb8" in name else Path(find_config(name))   # mmdetection's / shipped


def _option_args(options: dict) -> list[str]:
    """``--cfg-options`` items as a user types them."""
    return [f"{k}={v}" if isinstance(v, str) else f"{k}={v!r}".replace(" ", "") for k, v in options.items()]


@pytest.mark.parametrize("name", ["yolox_tiny_8xb8-300e_coco", "yolox_s_coco"])
def test_detengine_train_runs_the_yolox_file_with_its_mode_switch(name, tmp_path, capsys):
    """3 iterations of 2 (4 images, batch 2) over 3 epochs, the hook 1 epoch before the end: epoch 0
    trains on mosaics without the L1 loss, the mode switch comes at epoch 1 (0-based 3 - 1 - 1), with
    the L1 loss; the rate is mmdetection's quadratic warm-up base (k + 1)^2 / T^2, T = 5 epochs."""
    path = _config_path(name)
    options = cfg_options(load_config(path).to_dict(), tmp_path, epochs=3, last=1)
    run = tmp_path / "run"
    assert cli_main(["train", str(path), "--max-iters", "3", "--no-pretrained", "--work-dir", str(run),
                     "--cfg-options", *_option_args(options)]) in (0, None)
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    iters = [e for e in events if e["type"] == "iter"]
    assert [(e["epoch"], "loss_l1" in e["losses"]) for e in iters] == [(0, False), (0, False), (1, True)]
    t = 5 * 2
    assert [e["lr"] for e in iters] == pytest.approx([0.01 * (k + 1) ** 2 / t ** 2 for k in range(3)], rel=1e-9)
    warnings = " | ".join(e["message"] for e in events if e["type"] == "warning")
    assert "the MultiImageMixDataset skips ['Mosaic', 'RandomAffine'" in warnings and "train_dataset" not in warnings
    unsupported = [e["message"] for e in events if e["type"] == "warning" and "not supported" in e["message"]]
    assert unsupported == (["custom_hooks: 'SyncNormHook' is not supported here and is ignored"]
                           if "8xb8" in name else [])      # mmdetection's file has it, the shipped one not
    assert "stay in the train pipeline" not in warnings


def test_the_trainers_samples_are_mosaics_until_the_switch(tmp_path):
    """mmdetection's YOLOX-s file through train_from_config: the trainer's data set makes Mosaic +
    RandomAffine + MixUp samples (their images mixed in) before the hook's epoch and plain ones after,
    as the wrapper's skip_type_keys."""
    from detengine.train.events import EventBus
    from detengine.train.runner import train_from_config
    path = MMDET_YOLOX / "yolox_s_8xb8-300e_coco.py"
    cfg = load_config(path).to_dict()
    cfg = apply_cfg_options(cfg, cfg_options(cfg, tmp_path, epochs=3, last=1))
    seen = []
    train_from_config(cfg, max_iters=3, work_dir=tmp_path / "run", events=EventBus(), console=False,
                      pretrained=False, trainer_hook=seen.append)
    train_set = seen[0].train_set
    assert [type(t).__name__ for t in train_set.stages[0][1].transforms][:3] == list(SKIPPED)
    assert train_set.pipeline is train_set.stages[1][1] and train_set.stages[1][0] == 1   # switched at epoch 1
    assert not {type(t).__name__ for t in train_set.pipeline.transforms} & set(SKIPPED)
    before, after = train_set.sample(0, epoch=0), train_set.sample(0, epoch=1)
    assert [m["transform"] for m in before["meta"]["mixed"]] == ["Mosaic", "MixUp"]
    assert "mixed" not in after["meta"] and tuple(before["image"].shape) == (3, 64, 64)
