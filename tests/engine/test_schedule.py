"""Learning rates against mmengine 0.10.7's chained parameter schedulers, iteration by iteration
(fixtures/make_mmengine_schedule_reference.py), through the trainer's own LambdaLR."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detengine.train.settings import settings_from_config
from detengine.train.trainer import make_lr_scheduler

REF = json.loads((Path(__file__).parent / "fixtures" / "mmengine_schedule_reference.json").read_text())


@pytest.mark.parametrize("name", sorted(REF))
def test_rates_equal_mmengine(name):
    case = REF[name]
    cfg = {"optim_wrapper": {"optimizer": {"type": "SGD", "lr": case["base_lrs"][0]}},
           "param_scheduler": case["schedulers"], "train_cfg": {"max_epochs": case["epochs"]}}
    settings = settings_from_config(cfg)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizer = torch.optim.SGD([{"params": [params[0]]}, {"params": [params[1]], "lr": case["base_lrs"][1]}],
                                lr=case["base_lrs"][0])
    _, scheduler = make_lr_scheduler(optimizer, settings, case["ipe"])
    for step, want in enumerate(case["lrs"]):
        got = [g["lr"] for g in optimizer.param_groups]
        assert got == pytest.approx(want, rel=1e-12), (name, step)  # both groups, one of them lr_mult 0.1
        optimizer.step()
        scheduler.step()
