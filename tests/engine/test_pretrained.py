"""Pretrained backbones and fine-tuning as mmdetection configs say them; nothing is downloaded
(torch hub's cache is a temporary folder holding files made here with torchvision's own constructors,
and the download function is replaced by one that fails as an offline machine does)."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from detengine.models import build_detector
from detengine.pretrained import WeightsUnavailable, checkpoint_url, hub_cache_dir
from detengine.train.checkpoint import save_checkpoint
from detengine.train.events import EventBus, read_jsonl
from detengine.train.runner import load_cfg, start_weights, train_from_config

from .runs import CONFIGS, tiny_tinyssd_cfg


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """torch hub's cache in a temporary folder, and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def _retinanet_r18_cfg(checkpoint="torchvision://resnet18") -> dict:
    model = load_cfg(CONFIGS / "retinanet_r50_fpn_coco.py")["model"]
    model["bbox_head"]["num_classes"] = 3
    model["backbone"] = dict(model["backbone"], depth=18, init_cfg=dict(type="Pretrained", checkpoint=checkpoint))
    model["neck"] = dict(model["neck"], in_channels=[64, 128, 256, 512])
    return model


def test_names_resolve_to_mmengines_urls():
    assert checkpoint_url("torchvision://resnet50") == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert checkpoint_url("torchvision://resnet50.imagenet1k_v2").endswith("/resnet50-11ad3fa6.pth")
    assert checkpoint_url("open-mmlab://vgg16_caffe").endswith("/pretrain/third_party/vgg16_caffe-292e1171.pth")
    assert checkpoint_url("/some/file.pth") is None
    with pytest.raises(ValueError, match="unknown open-mmlab name"):
        checkpoint_url("open-mmlab://no_such_net")
    with pytest.raises(ValueError, match="pavi:// is not supported"):
        checkpoint_url("pavi://x/y.pth")


def test_a_pretrained_backbone_comes_from_the_hub_cache():
    weights = torchvision.models.resnet18().state_dict()  # torchvision's own layout, as downloaded
    cached = hub_cache_dir() / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(weights, cached)
    model_cfg = _retinanet_r18_cfg()
    model = build_detector(model_cfg)
    lines = start_weights(model, model_cfg)
    assert "resnet18-f37072fd.pth" in lines[0] and "120 weights loaded" in lines[0]
    assert "2 in the file unused (e.g. fc.weight, fc.bias)" in lines[0]
    own = model.backbone.state_dict()
    assert torch.equal(own["stem.0.weight"], weights["conv1.weight"])
    assert torch.equal(own["stages.3.1.bn2.running_var"], weights["layer4.1.bn2.running_var"])


def test_offline_the_message_names_the_file_and_where_to_put_it():
    model_cfg = _retinanet_r18_cfg()
    with pytest.raises(WeightsUnavailable) as err:
        start_weights(build_detector(model_cfg), model_cfg)
    text = str(err.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in text
    assert str(hub_cache_dir() / "resnet18-f37072fd.pth") in text and "Temporary failure" in text


def test_a_vgg16_and_a_prefixed_whole_detector_checkpoint(tmp_path):
    vgg = torchvision.models.vgg16().state_dict()
    torch.save(vgg, tmp_path / "vgg16.pth")
    model_cfg = load_cfg(CONFIGS / "ssd300_coco.py")["model"]
    model_cfg["backbone"]["init_cfg"] = dict(type="Pretrained", checkpoint=str(tmp_path / "vgg16.pth"))
    model = build_detector(model_cfg)
    line = start_weights(model, model_cfg)[0]
    assert "26 weights loaded" in line and "features.31.weight" in line  # fc6 / fc7 are SSD's own
    assert torch.equal(model.backbone.state_dict()["features.28.weight"], vgg["features.28.weight"])
    # mmengine's prefix: the backbone of a whole detector's checkpoint
    whole = {f"backbone.{k}": v + 1 for k, v in model.backbone.state_dict().items()}
    whole["bbox_head.x.weight"] = torch.zeros(1)
    torch.save({"state_dict": whole}, tmp_path / "det.pth")
    model_cfg["backbone"]["init_cfg"] = dict(type="Pretrained", checkpoint=str(tmp_path / "det.pth"), prefix="backbone")
    other = build_detector(model_cfg)
    start_weights(other, model_cfg)
    assert torch.equal(other.backbone.state_dict()["features.31.weight"], whole["backbone.features.31.weight"])


def test_a_random_backbone_with_frozen_parts_is_warned_about():
    model_cfg = _retinanet_r18_cfg()
    lines = start_weights(build_detector(model_cfg), model_cfg, pretrained=False)
    assert "not loaded: training from scratch as asked" in lines[0]
    assert "frozen_stages=1, norm_eval=True" in lines[1]


@pytest.mark.slow
def test_load_from_resume_and_missing_files(tmp_path):
    cfg = tiny_tinyssd_cfg(tmp_path / "data")
    source = build_detector(dict(cfg["model"], bbox_head=dict(cfg["model"]["bbox_head"], num_classes=5)))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.5)
    save_checkpoint(tmp_path / "source.pth", {"model": source.state_dict()})
    seen = {}

    def before_step_1(trainer):
        seen.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
    cfg_load = dict(cfg, load_from=str(tmp_path / "source.pth"))
    train_from_config(cfg_load, max_iters=1, work_dir=tmp_path / "ft", console=False, trainer_hook=before_step_1)
    for key, value in source.state_dict().items():
        assert torch.equal(seen[key], value), key  # every weight, before the first step
    log = read_jsonl(tmp_path / "ft" / "log.jsonl")
    assert any("load_from" in e.get("message", "") and "weights loaded" in e["message"] for e in log)

    with pytest.raises(WeightsUnavailable, match="checkpoint .*nope.pth does not exist"):
        train_from_config(dict(cfg, load_from=str(tmp_path / "nope.pth")), max_iters=1, work_dir=tmp_path / "x",
                          console=False)

    # resume=True: the work folder's latest checkpoint, continuing its iteration count
    first = EventBus()
    train_from_config(cfg, epochs=1, work_dir=tmp_path / "run", console=False, events=first)
    events = EventBus()
    train_from_config(dict(cfg, resume=True), epochs=2, work_dir=tmp_path / "run", console=False, events=events)
    epochs = {e["epoch"] for e in events.history if e["type"] == "iter"}
    assert epochs == {max(e["epoch"] for e in first.history if e["type"] == "iter") + 1}  # only the second epoch
    assert any("resume=True: continuing" in e.get("message", "") for e in events.history)
