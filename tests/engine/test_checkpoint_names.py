"""Checkpoints in mmdetection 3.x's key layout load by name into every shipped family.

The mmdetection names below are written out from mmdetection's modules (``SSDVGG`` on mmcv's
``VGG``, ``SSDNeck``, ``SSDHead``; ``ResNet``, ``FPN``, ``RetinaHead``; RTMDet's from the fixture
made with the real mmdetection), in mmdetection's registration order, independently of DetScope's
name map. A model's tensors are saved under those names by position; loading them back by name
must put every tensor where it was, so the model predicts the same boxes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.models import build_detector
from detengine.train.checkpoint import load_state_checked
from detengine.train.runner import _model_from_checkpoint, load_cfg

from .runs import CONFIGS

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
WB = ("weight", "bias")


def _names(prefix: str, fields=WB) -> list[str]:
    return [f"{prefix}.{f}" for f in fields]


def mmdet_ssd_keys(num_extra: int, num_levels: int) -> list[str]:
    """SSDVGG (mmcv VGG16: conv+ReLU per block, ceil-mode pool after stages 1-4, no last pool;
    then pool5 30, fc6 31, fc7 33), SSDNeck (L2Norm, extra ConvModule pairs), SSDHead (one conv
    per level wrapped in a Sequential: cls_convs.L.0)."""
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33]
    keys = [k for i in convs for k in _names(f"backbone.features.{i}")]
    keys.append("neck.l2_norm.weight")
    keys += [k for i in range(num_extra) for j in (0, 1) for k in _names(f"neck.extra_layers.{i}.{j}.conv")]
    for branch in ("cls_convs", "reg_convs"):
        keys += [k for level in range(num_levels) for k in _names(f"bbox_head.{branch}.{level}.0")]
    return keys


def mmdet_retinanet_r50_keys() -> list[str]:
    """ResNet-50 (pytorch style: conv1, bn1, layer1..4 of Bottlenecks with downsample.0/.1),
    FPN from C3 (3 laterals; fpn_convs 0-2 and the two extra P6/P7 convs 3-4, all ConvModules),
    RetinaHead (4 ConvModules per tower, retina_cls, retina_reg)."""
    keys = ["backbone.conv1.weight", *_names("backbone.bn1", BN)]
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"backbone.layer{stage}.{b}"
            keys += [f"{p}.conv1.weight", *_names(f"{p}.bn1", BN), f"{p}.conv2.weight", *_names(f"{p}.bn2", BN),
                     f"{p}.conv3.weight", *_names(f"{p}.bn3", BN)]
            if b == 0:
                keys += [f"{p}.downsample.0.weight", *_names(f"{p}.downsample.1", BN)]
    keys += [k for i in range(3) for k in _names(f"neck.lateral_convs.{i}.conv")]
    keys += [k for i in range(5) for k in _names(f"neck.fpn_convs.{i}.conv")]
    for branch in ("cls_convs", "reg_convs"):
        keys += [k for i in range(4) for k in _names(f"bbox_head.{branch}.{i}.conv")]
    return keys + _names("bbox_head.retina_cls") + _names("bbox_head.retina_reg")


def mmdet_rtmdet_tiny_keys() -> list[str]:
    ref = Path(__file__).parent / "fixtures" / "mmengine_optim_reference.pt"
    return list(torch.load(ref, weights_only=True)["rtmdet_forward"]["keys"])


FAMILIES = {
    "ssd300_coco": (lambda: mmdet_ssd_keys(4, 6), (300, 300)),
    "ssd512_coco": (lambda: mmdet_ssd_keys(5, 7), (512, 512)),
    "retinanet_r50_fpn_coco": (mmdet_retinanet_r50_keys, (128, 160)),
    "rtmdet_tiny_coco": (mmdet_rtmdet_tiny_keys, (128, 160)),
}


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = load_cfg(CONFIGS / f"{name}.py")
    cfg["model"]["bbox_head"]["num_classes"] = 3
    if "backbone" in cfg["model"] and cfg["model"]["backbone"].get("type") == "ResNet":
        cfg["model"]["backbone"]["depth"] = 50
    model = build_detector(cfg["model"])
    # every parameter and buffer distinct, so a tensor loaded into another's place shows
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 1e-3)
            if key.endswith("running_var"):
                t.abs_().add_(0.5)
    return model.eval()


def _mmdet_checkpoint(name: str, model, path: Path) -> Path:
    keys = FAMILIES[name][0]()
    state = model.state_dict()
    assert len(keys) == len(state), f"{name}: mmdetection has {len(keys)} tensors, DetScope {len(state)}"
    mmdet_state = {"data_preprocessor.mean": torch.zeros(3, 1, 1)}  # dropped on load
    mmdet_state.update({k: v.clone() for k, v in zip(keys, state.values(), strict=True)})
    classes = ["cat", "dog", "bird"]
    torch.save({"meta": {"dataset_meta": {"classes": classes}}, "state_dict": mmdet_state}, path)
    return path


@pytest.mark.slow
@torch.no_grad()
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_an_mmdetection_checkpoint_loads_by_name_and_predicts_the_same_boxes(name, tmp_path):
    model = _model(name)
    shape = FAMILIES[name][1]
    images = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    outputs, before = _predict_keeping_outputs(model, images)
    path = _mmdet_checkpoint(name, model, tmp_path / f"{name}_mmdet.pth")
    other = _model(name, seed=1)
    state = torch.load(path, weights_only=True)["state_dict"]
    load_state_checked(other, state, path)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    mine, after = _predict_keeping_outputs(other, images)
    for a, b in zip(mine, outputs, strict=True):  # scores and box regression
        assert torch.equal(a, b)
    assert torch.equal(after.boxes, before.boxes) and torch.equal(after.labels, before.labels)


def _predict_keeping_outputs(model, images):
    """(the network's scores and box regression, the detections) from one forward: predict's own
    (SSD512's forward at 512x512 is seconds on one core)."""
    seen = []
    handle = model.register_forward_hook(lambda _module, _args, out: seen.append(out[:2]))
    try:
        detections = model.predict({"images": images})[0]
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0], detections


def test_the_checkpoint_loader_takes_mmdetection_layout_and_classes(tmp_path):
    model = _model("ssd300_coco")
    path = _mmdet_checkpoint("ssd300_coco", model, tmp_path / "ssd.pth")
    cfg = load_cfg(CONFIGS / "ssd300_coco.py")
    cfg["model"]["bbox_head"]["num_classes"] = 3
    cfg_file = tmp_path / "ssd3.py"
    from detengine.config import Config
    cfg_file.write_text(Config.from_dict(cfg).pretty_text())
    _, loaded = _model_from_checkpoint(cfg_file, path, torch.device("cpu"))
    assert torch.equal(loaded.state_dict()["head.cls_convs.5.weight"], model.state_dict()["head.cls_convs.5.weight"])
    from detengine.project_eval import checkpoint_class_names
    assert checkpoint_class_names(path) == ["cat", "dog", "bird"]


def test_a_missing_or_reshaped_key_is_named(tmp_path):
    model = _model("retinanet_r50_fpn_coco")
    path = _mmdet_checkpoint("retinanet_r50_fpn_coco", model, tmp_path / "r.pth")
    state = torch.load(path, weights_only=True)["state_dict"]
    renamed = dict(state)
    renamed["bbox_head.retina_clf.weight"] = renamed.pop("bbox_head.retina_cls.weight")
    with pytest.raises(ValueError, match=r"head\.retina_cls\.weight.*the checkpoint's bbox_head\.retina_clf\.weight"):
        load_state_checked(_model("retinanet_r50_fpn_coco"), renamed, "r.pth")
    reshaped = dict(state)
    reshaped["bbox_head.retina_cls.weight"] = torch.zeros(720, 256, 3, 3)  # 80 classes instead of 3
    with pytest.raises(ValueError, match=r"head\.retina_cls\.weight \(the checkpoint's bbox_head\.retina_cls\.weight\): "
                                         r"\(720, 256, 3, 3\) in the checkpoint, \(27, 256, 3, 3\) in the model"):
        load_state_checked(_model("retinanet_r50_fpn_coco"), reshaped, "r.pth")


def test_torchvision_detection_state_dicts_are_refused_with_the_reason():
    state = {"backbone.features.0.weight": torch.zeros(1), "head.classification_head.module_list.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="ssd300_vgg16: its default boxes are clipped"):
        load_state_checked(_model("ssd300_coco"), state, "tv.pth")
    state = {"backbone.body.conv1.weight": torch.zeros(1), "backbone.fpn.inner_blocks.0.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="P6 is computed from P5"):
        load_state_checked(_model("retinanet_r50_fpn_coco"), state, "tv.pth")
