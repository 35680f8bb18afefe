"""A run's checkpoint carries its config as data: opening it runs no code; the CLI says which
config file it runs."""
from __future__ import annotations

import torch

from detengine.config import load_config
from detengine.train.runner import train_from_config
from detengine.train.runs import checkpoint_config, config_for_checkpoint

from .runs import tiny_tinyssd_cfg


def test_a_checkpoint_carries_its_config_and_opening_it_runs_nothing(tmp_path):
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    train_from_config(cfg, max_iters=1, work_dir=tmp_path / "run", console=False)
    ckpt = tmp_path / "run" / "last.pth"
    marker = tmp_path / "ran.txt"
    (tmp_path / "run" / "config.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")  # a hostile file
    carried = checkpoint_config(ckpt)
    assert carried["model"]["type"] == "TinySSD" and torch.load(ckpt, weights_only=True)["meta"]["config"]
    path = config_for_checkpoint(ckpt)
    assert path is not None and not marker.exists()
    loaded = load_config(path).to_dict()
    assert loaded["model"] == carried["model"] and loaded["train_pipeline"] == carried["train_pipeline"]
    assert config_for_checkpoint(ckpt) == path                 # the same file again, not a new one


def test_an_older_checkpoint_carries_none(tmp_path):
    torch.save({"model": {}, "meta": {"classes": ["a"]}}, tmp_path / "old.pth")
    assert checkpoint_config(tmp_path / "old.pth") is None and config_for_checkpoint(tmp_path / "old.pth") is None


def test_the_cli_says_which_config_file_it_runs(tmp_path, capsys):
    from detengine.cli import main

    from .runs import CONFIGS
    mine = tmp_path / "mine.py"
    mine.write_text(f"_base_ = {str(CONFIGS / 'ssd300_coco.py')!r}\n")
    for config, said in ((str(mine), True), ("ssd300_coco", False)):
        assert main(["inspect", "--config", config, "--gt", "10,10,100,100,0"]) in (0, None)
        assert (f"config: running {mine}" in capsys.readouterr().err) == said
