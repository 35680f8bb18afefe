"""The shipped configs of the dense family are mmdetection's own files (their model dicts, as the
real mmdetection 3.3.0 merged them in the fixtures) and trace from the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detengine.cli import main as cli_main
from detengine.config import load_config
from detengine.shipped import find_config

FIXTURES = Path(__file__).parent / "fixtures"
SHIPPED = {  # shipped name -> (fixture, mmdetection's config name)
    "atss_r50_fpn_coco": ("mmdet_atss_reference.pt", "atss_r50_fpn_1x_coco"),
    "gfl_r50_fpn_coco": ("mmdet_gfl_reference.pt", "gfl_r50_fpn_1x_coco"),
    "tood_r50_fpn_coco": ("mmdet_tood_reference.pt", "tood_r50_fpn_1x_coco"),
}


def _plain(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_model_is_mmdetections(name):
    fixture, mmdet_name = SHIPPED[name]
    ref = torch.load(FIXTURES / fixture, weights_only=True)["configs"][mmdet_name]["model"]
    assert _plain(load_config(find_config(name)).to_dict()["model"]) == _plain(ref)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_config_traces_from_the_command_line(name, capsys):
    assert cli_main(["inspect", "--config", name, "--image-size", "256", "256", "--gt", "10,20,200,240,3",
                     "--gt", "40,40,80,90,5", "--init-preds"]) in (0, None)
    out = capsys.readouterr().out
    assert "GTs with no positive: none" in out and "loss (init predictions)" in out
