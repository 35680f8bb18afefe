"""The shipped YOLOX configs (yolox_s_coco, yolox_tiny_coco) are mmdetection's files (their model, as the
real mmdetection 3.3.0 merged it, with its multi-scale batch augment; its train pipeline inside the
MultiImageMixDataset wrapper, optimiser, quadratic warm-up and schedule, hooks but SyncNormHook),
trace from the command line with the objectness in the "Why?" / loss breakdown, and train: the L1
loss comes on at YOLOXModeSwitchHook's epoch. (Training mmdetection's own files: test_yolox_training.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detengine.api import inspect
from detengine.cli import main as cli_main
from detengine.config import load_config
from detengine.shipped import find_config

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_yolox_head_reference.pt"
SHIPPED = {"yolox_s_coco": "yolox_s_8xb8-300e_coco", "yolox_tiny_coco": "yolox_tiny_8xb8-300e_coco"}


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _plain(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_model_is_mmdetections_with_its_normalisation_written_out(R, name):
    ref = _plain(R["configs"][SHIPPED[name]])
    cfg = _plain(load_config(find_config(name)).to_dict())
    ours, theirs = dict(cfg["model"]), dict(ref["model"])
    pre, their_pre = ours.pop("data_preprocessor"), theirs.pop("data_preprocessor")
    assert ours == theirs
    # mmdetection's DetDataPreprocessor without mean / std feeds raw BGR pixels: the same as written out here
    assert their_pre["type"] == "DetDataPreprocessor" and set(their_pre) == {"type", "pad_size_divisor", "batch_augments"}
    assert [a["type"] for a in their_pre["batch_augments"]] == ["BatchSyncRandomResize"]
    assert pre == dict(their_pre, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_schedule_and_hooks_are_mmdetections(R, name):
    ref = _plain(R["configs"][SHIPPED[name]])
    cfg = _plain(load_config(find_config(name)).to_dict())
    assert cfg["optim_wrapper"] == ref["optim_wrapper"]
    assert cfg["train_cfg"]["max_epochs"] == ref["train_cfg"]["max_epochs"] == 300
    assert cfg["train_cfg"]["val_interval"] == ref["train_cfg"]["val_interval"]
    # quadratic warm-up (mmdet.QuadraticWarmupLR) over 5 epochs, cosine 5..285 to 0.05 x lr, constant 285..300
    assert cfg["param_scheduler"] == ref["param_scheduler"]
    assert cfg["param_scheduler"][0]["type"] == "mmdet.QuadraticWarmupLR"
    hooks = {h["type"]: h for h in cfg["custom_hooks"]}
    theirs = {h["type"]: h for h in ref["custom_hooks"]}
    assert hooks == {k: v for k, v in theirs.items() if k != "SyncNormHook"} and "SyncNormHook" in theirs


_IO = ("LoadImageFromFile", "LoadAnnotations", "PackDetInputs")     # the dataset's loading and packing


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_train_and_test_pipelines_are_mmdetections(R, name):
    """The train pipeline is mmdetection's (Mosaic, RandomAffine, [MixUp,] ...) in its
    MultiImageMixDataset wrapper, whose data set only loads; the training set skips YOLOXModeSwitchHook's
    skip_type_keys for the last epochs; the test pipeline is its own (Resize to 640 / 416, Pad to a
    square of 114)."""
    from detengine.train.data import build_data
    ref = _plain(R["configs"][SHIPPED[name]])
    cfg = _plain(load_config(find_config(name)).to_dict())
    wrapper = cfg["train_dataloader"]["dataset"]
    assert wrapper["type"] == "MultiImageMixDataset" and wrapper["pipeline"] == ref["train_pipeline"]
    assert [t["type"] for t in wrapper["dataset"]["pipeline"]] == ["LoadImageFromFile", "LoadAnnotations"]
    assert cfg["train_pipeline"] == ref["train_pipeline"]
    assert [t for t in cfg["test_pipeline"] if t["type"] not in _IO] == \
        [t for t in ref["test_pipeline"] if t["type"] not in _IO]
    train = build_data(cfg, "synthetic", seed=0).train
    theirs = [t["type"] for t in ref["train_pipeline"] if t["type"] not in _IO]
    assert [type(t).__name__ for t in train.pipeline.transforms][:len(theirs)] == theirs
    (epoch, last), = train.stages[1:]
    assert epoch == 300 - 15 - 1
    kept = [t for t in theirs if t not in ("Mosaic", "RandomAffine", "MixUp")]
    assert [type(t).__name__ for t in last.transforms][:len(kept)] == kept


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_config_traces_from_the_command_line(name, capsys):
    assert cli_main(["inspect", "--config", name, "--image-size", "256", "256", "--gt", "10,20,200,240,3",
                     "--gt", "40,40,80,90,5", "--init-preds"]) in (0, None)
    out = capsys.readouterr().out
    assert "YOLOXHead (80 classes)" in out and "assigner SimOTAAssigner" in out
    assert "GTs with no positive: none" in out and "loss (init predictions)" in out and "loss_obj" in out


def test_the_objectness_is_in_the_why_and_the_loss_breakdown_per_level_and_per_gt():
    gts = [[10, 20, 200, 240], [40, 40, 80, 90]]
    trace = inspect((256, 256), gts, [3, 5], "yolox_tiny_coco", predictions="init")
    b = trace.loss_breakdown
    for part in ("per_level", "per_gt"):
        assert set(b[part]) == {"loss_cls", "loss_bbox", "loss_obj"}
    term = b["terms"]["loss_obj"]
    assert sum(b["per_level"]["loss_obj"]) == pytest.approx(term, rel=1e-5)      # every point
    assert 0 < sum(b["per_gt"]["loss_obj"]) < term                                # its positives' share
    assert trace.postprocess is not None and trace.postprocess.raw_stage.shape == (len(trace.priors), 1)
    pos = int(trace.assign_result.gt_inds.nonzero()[0])
    assert any("positive" in line for line in trace.assign_result.why_per_gt(pos))
    assert trace.assign_result.extras["pair_reasons"].shape == (2, len(trace.priors))


def _tiny_yolox_cfg(tmp_path, epochs=1):
    from detengine.train.runner import load_cfg
    cfg = load_cfg(find_config("yolox_tiny_coco"))
    cfg["data"] = {"default": "synthetic", "synthetic": {"root": str(tmp_path / "data"), "num_train": 2,
                                                          "num_val": 1, "image_size": 64, "seed": 1}}
    cfg["train_dataloader"] = dict(cfg["train_dataloader"], batch_size=1, num_workers=0)
    cfg["train_cfg"] = dict(cfg["train_cfg"], max_epochs=epochs)
    cfg["probe"] = {"interval": 0}
    return cfg


def test_the_shipped_yolox_tiny_trains_with_the_l1_loss_switched_on_at_the_hooks_epoch(tmp_path):
    """A 1-epoch run: mmdetection's hook switches before epoch 0 (0 + 1 >= 1 - 15), so the step has
    loss_l1 and the wrapper skips Mosaic / RandomAffine; the run says when."""
    from detengine.train.events import EventBus
    from detengine.train.runner import train_from_config
    events = EventBus()
    train_from_config(_tiny_yolox_cfg(tmp_path), max_iters=1, work_dir=tmp_path / "run", events=events,
                      console=False, pretrained=False)
    it = [e for e in events.history if e["type"] == "iter"]
    assert len(it) == 1 and set(it[0]["losses"]) == {"loss_cls", "loss_bbox", "loss_obj", "loss_l1"}
    assert all(torch.isfinite(torch.tensor(v)) for v in it[0]["losses"].values())
    warnings = " | ".join(e["message"] for e in events.history if e["type"] == "warning")
    assert "YOLOXModeSwitchHook: the L1 box loss is added from epoch 1 of 1" in warnings
    assert "the MultiImageMixDataset skips ['Mosaic', 'RandomAffine'] from epoch 1" in warnings
    assert "not supported here and is ignored" not in warnings


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_random_predictions_and_no_priors_at_all_trace(name):
    """``--random-preds``: YOLOX's raw regression as drawn (boxes near their points, finite); a
    feature map of no cells gives an empty, zero-loss trace."""
    from detengine.trace import head_core_for, model_config, random_predictions
    model = model_config(find_config(name))
    gt, labels = torch.tensor([[10.0, 20, 120, 200], [150, 150, 160, 158]]), torch.tensor([0, 7])
    plain = inspect((320, 320), gt, labels, model)
    assert plain.predictions_source == "init" and len(plain.priors) == 2100
    cls, reg = random_predictions(head_core_for(model), plain.priors, seed=1)
    t = inspect((320, 320), gt, labels, model, (cls, reg))
    assert torch.isfinite(t.postprocess.boxes).all() and float(t.postprocess.boxes.abs().max()) < 2000
    assert all(torch.isfinite(v) for v in t.loss.terms.values()) and t.assign_result.num_pos > 0
    empty = inspect((300, 300), gt[:1], labels[:1], model, "init", featmap_sizes=[(0, 0)] * 3)
    assert len(empty.priors) == 0 and all(float(v) == 0.0 for v in empty.loss.terms.values())
    assert empty.postprocess.boxes.shape == (0, 4) and empty.coverage.rows()[0]["num_pos"] == 0


MMDET_FILES = Path(__file__).parent / "fixtures" / "mmdet_configs"     # mmdetection 3.3.0's own files, copied


@pytest.mark.parametrize("name", ["yolox_tiny_8xb8-300e_coco", "yolox_s_8xb8-300e_coco", "yolox_m_8xb8-300e_coco",
                                  "yolox_l_8xb8-300e_coco", "yolox_x_8xb8-300e_coco", "yolox_nano_8xb8-300e_coco"])
def test_mmdetections_own_yolox_files_load_as_mmengine_merges_them(R, name):
    """DetScope's loader on mmdetection's files (``_base_`` chains into ``../_base_``, ``{{_base_.backend_args}}``):
    the model, hooks, schedule, optimiser and pipelines mmengine's ``Config.fromfile`` gave; the debug
    views' head core builds; the network builds with its batch augment (test_batch_sync_resize.py)."""
    from detengine.builder import build_head_core
    from detengine.models import build_detector
    cfg = _plain(load_config(MMDET_FILES / "yolox" / f"{name}.py").to_dict())
    ref = _plain(R["configs"][name])
    for key in ("model", "custom_hooks", "param_scheduler", "optim_wrapper", "train_cfg", "train_pipeline",
                "test_pipeline"):
        assert cfg[key] == ref[key], key
    assert len(build_head_core(cfg["model"]).priors((320, 320))) == ref["num_priors"]
    with torch.device("meta"):
        build_detector(cfg["model"])


def test_mmdetections_tta_file_loads_and_is_refused_for_having_no_model():
    from detengine.trace import model_config
    cfg = load_config(MMDET_FILES / "yolox" / "yolox_tta.py").to_dict()
    assert sorted(cfg) == ["img_scales", "tta_model", "tta_pipeline"]
    with pytest.raises(ValueError, match="no 'model'"):
        model_config(cfg)
