"""mmdetection's ``QuadraticWarmupLR`` (YOLOX's warm-up): the rates are pinned against mmdetection
3.3.0 / mmengine 0.10.7 in test_schedule.py (the ``yolox_like`` and ``quadratic_*`` cases of
fixtures/mmengine_schedule_reference.json); here, what the config reader accepts and refuses."""
from __future__ import annotations

import pytest

from detengine.train.schedule import LrSchedule
from detengine.train.settings import run_warnings, settings_from_config


def _settings(*schedulers, epochs=10):
    return settings_from_config({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.01}},
                                 "param_scheduler": list(schedulers), "train_cfg": {"max_epochs": epochs}})


def test_yolox_files_name_it_with_the_mmdet_scope_and_both_names_give_the_same_rates():
    scoped = _settings(dict(type="mmdet.QuadraticWarmupLR", by_epoch=True, begin=0, end=5, convert_to_iter_based=True))
    plain = _settings(dict(type="QuadraticWarmupLR", by_epoch=True, begin=0, end=5, convert_to_iter_based=True))
    a, b = LrSchedule(scoped.schedulers, 4, 10).rates(0.01), LrSchedule(plain.schedulers, 4, 10).rates(0.01)
    assert list(a) == list(b)
    t = 5 * 4
    # a lone warm-up: base (k + 1)^2 / T^2, the full rate at iteration T - 1
    assert [a[k] for k in range(t)] == pytest.approx([0.01 * (k + 1) ** 2 / t ** 2 for k in range(t)], rel=1e-12)
    assert a[t] == a[t - 1] == pytest.approx(0.01, rel=1e-12)


def test_what_is_refused_as_mmdetection_refuses_it():
    with pytest.raises(ValueError, match="QuadraticWarmupLR needs end"):
        _settings(dict(type="mmdet.QuadraticWarmupLR", by_epoch=True, begin=0))
    with pytest.raises(ValueError, match="unknown arguments \\['start_factor'\\]"):
        _settings(dict(type="QuadraticWarmupLR", start_factor=0.1, end=5))
    with pytest.raises(ValueError, match="'mmdet.QuadraticWarmupMomentum' is not supported; use one of .*"
                                         "'QuadraticWarmupLR'"):
        _settings(dict(type="mmdet.QuadraticWarmupMomentum", end=5))


def test_a_run_shorter_than_the_warm_up_is_said_so():
    s = _settings(dict(type="mmdet.QuadraticWarmupLR", by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
                  epochs=2)
    assert any("QuadraticWarmupLR ends at epoch 5: the warm-up never reaches the full rate" in w
               for w in run_warnings(s, 3))
