"""mmdetection's own model configs build exactly what mmdetection builds, or are refused.

``mmdet_layout_configs.CONFIGS`` are mmdetection 3.3.0's config files (bases merged);
``fixtures/mmdet_build_reference.json`` holds what mmdetection built from each (parameter counts
per part, feature-map shapes, priors). Networks are built on the meta device: shapes and counts
without allocating 100M parameters."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from detengine.builder import ConfigBuildError, build_head_core
from detengine.models import build_detector

from .mmdet_layout_configs import CONFIGS, INPUT

REF = json.loads((Path(__file__).parent / "fixtures" / "mmdet_build_reference.json").read_text())

# name -> the key the refusal must name (everything else must build exactly)
REFUSED = {
    "retinanet_r50_nasfpn_crop640-50e_coco": "model.neck.type='NASFPN'",
    "libra-retinanet_r50_fpn_1x_coco": "model.neck is a chain ['FPN', 'BFP']",
    "rtmdet_l_swin_b_p6_4xb16-100e_coco": "model.backbone.type='SwinTransformer'",
    "rtmdet_l_convnext_b_4xb32-100e_coco": "model.backbone.type='mmpretrain.ConvNeXt'",
}
# the head core (priors, assigner: the Anchors / Assignment views) of these is not built either
NO_TRACE = {"retinanet_r50_nasfpn_crop640-50e_coco": "RetinaSepBNHead",
            "libra-retinanet_r50_fpn_1x_coco": "BalancedL1Loss"}


def _numel(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in REFUSED])
def test_builds_exactly_what_mmdetection_builds(name):
    ref = REF[name]
    with torch.device("meta"):
        model = build_detector(CONFIGS[name]).eval()
        feats = model.backbone(torch.zeros(1, 3, *INPUT[name]))
        feats = model.neck(feats) if model.neck is not None else feats
    assert _numel(model) == ref["params"]
    assert [_numel(model.backbone), _numel(model.neck), _numel(model.head)] == \
        [ref["backbone_params"], ref["neck_params"], ref["head_params"]]
    assert [list(f.shape[1:]) for f in feats] == ref["feature_shapes"]
    assert len(model.core.priors(INPUT[name])) == ref["num_priors"]


def test_the_head_outputs_have_mmdetections_sizes():
    """One per family: the class and box outputs (flattened over levels and priors here, per
    level maps in mmdetection) hold as many values, with mmdetection's class channels."""
    import math
    for name in ("ssd300_coco", "retinanet_r50_fpn_1x_coco", "rtmdet_tiny_8xb32-300e_coco"):
        ref = REF[name]
        with torch.device("meta"):
            model = build_detector(CONFIGS[name])
            cls, reg = model.head(list(model.neck(model.backbone(torch.zeros(1, 3, *INPUT[name])))))
        assert cls.shape[-1] == ref["cls_out_channels"]
        assert cls.numel() == sum(math.prod(s) for s in ref["cls_score_shapes"])
        assert reg.numel() == sum(math.prod(s) for s in ref["bbox_pred_shapes"])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_the_key_and_the_reason(name):
    with pytest.raises(ConfigBuildError) as err:
        build_detector(CONFIGS[name])
    assert REFUSED[name] in str(err.value)
    assert "not built here" in str(err.value)


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in NO_TRACE])
def test_the_debug_views_priors_are_mmdetections_even_where_the_network_is_refused(name):
    assert len(build_head_core(CONFIGS[name]).priors(INPUT[name])) == REF[name]["num_priors"]


@pytest.mark.parametrize("name", sorted(NO_TRACE))
def test_a_head_core_that_is_not_built_is_refused_by_name(name):
    with pytest.raises(ConfigBuildError, match=NO_TRACE[name]):
        build_head_core(CONFIGS[name])


@pytest.mark.parametrize("key, value, message", [
    ("depth", 200, "model.backbone.depth=200"),
    ("with_cp", True, "model.backbone.with_cp=True"),
    ("dcn", dict(type="DCNv2"), "model.backbone.dcn="),
    ("norm_cfg", dict(type="GN", num_groups=32), "model.backbone.norm_cfg="),
    ("pretrained", "torchvision://resnet50", "takes no argument 'pretrained'"),
])
def test_a_backbone_key_that_would_change_the_network_is_refused(key, value, message):
    cfg = dict(CONFIGS["retinanet_r50_fpn_1x_coco"])
    cfg["backbone"] = dict(cfg["backbone"], **{key: value})
    with pytest.raises(ConfigBuildError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_detector(cfg)


def test_channels_and_levels_that_do_not_meet_are_refused():
    cfg = dict(CONFIGS["retinanet_r50_fpn_1x_coco"])
    with pytest.raises(ConfigBuildError, match="model.neck.in_channels"):
        build_detector(dict(cfg, neck=dict(cfg["neck"], in_channels=[256, 512, 1024, 1024])))
    with pytest.raises(ConfigBuildError, match="6 feature maps.*5 levels"):
        build_detector(dict(cfg, neck=dict(cfg["neck"], num_outs=6)))


@pytest.mark.parametrize("extra", [False, "on_lateral", "on_output"])
def test_fpn_extra_levels_follow_add_extra_convs(extra):
    """mmdetection's three ways to make P6/P7 (and max-pools when False): same shapes as 'on_input',
    parameters only where mmdetection has them."""
    cfg = dict(CONFIGS["retinanet_r50_fpn_1x_coco"])
    cfg = dict(cfg, neck=dict(cfg["neck"], add_extra_convs=extra))
    with torch.device("meta"):
        model = build_detector(cfg)
        feats = model.neck(model.backbone(torch.zeros(1, 3, 320, 320)))
    assert [list(f.shape[1:]) for f in feats] == REF["retinanet_r50_fpn_1x_coco"]["feature_shapes"]
    ref_neck = REF["retinanet_r50_fpn_1x_coco"]["neck_params"]
    first_extra_on_input = 2048 * 256 * 9 + 256
    first_extra_on_output = 256 * 256 * 9 + 256
    expected = {False: ref_neck - first_extra_on_input - first_extra_on_output,
                "on_lateral": ref_neck - first_extra_on_input + first_extra_on_output,
                "on_output": ref_neck - first_extra_on_input + first_extra_on_output}[extra]
    assert _numel(model.neck) == expected


def test_the_legacy_coder_is_mmdetections():
    from detengine.builder import build
    ref = torch.load(Path(__file__).parent / "fixtures" / "mmdet_legacy_coder_reference.pt", weights_only=True)
    coder = build(dict(type="LegacyDeltaXYWHBBoxCoder", target_means=(0.1, 0, 0, 0.2),
                       target_stds=(0.1, 0.1, 0.2, 0.2)), "bbox_coder")
    torch.testing.assert_close(coder.encode(ref["p"], ref["g"]), ref["enc"], rtol=0, atol=1e-5)
    torch.testing.assert_close(coder.decode(ref["p"], ref["d"], (60, 70)), ref["dec"], rtol=0, atol=1e-4)
    plain = build(dict(type="DeltaXYWHBBoxCoder", target_means=(0.1, 0, 0, 0.2), target_stds=(0.1, 0.1, 0.2, 0.2)),
                  "bbox_coder")
    assert (plain.encode(ref["p"], ref["g"]) - ref["enc"]).abs().max() > 1e-3   # the +1 is seen


@pytest.mark.slow
def test_mmdetections_own_ssd300_file_trains(tmp_path):
    """``type='SingleStageDetector'`` (mmdetection's own SSD files) is an SSD: the trainer runs it."""
    from detengine.train.events import EventBus
    from detengine.train.runner import load_cfg, train_from_config

    from .runs import CONFIGS as SHIPPED
    cfg = load_cfg(SHIPPED / "ssd300_coco.py")
    cfg["model"] = CONFIGS["ssd300_coco"]                # mmdetection's model dict, SingleStageDetector
    cfg["data"] = {"default": "synthetic", "synthetic": {"root": str(tmp_path / "data"), "num_train": 4,
                                                          "num_val": 2, "image_size": 96, "seed": 1}}
    cfg["train_dataloader"] = {"batch_size": 1, "num_workers": 0}
    cfg["probe"] = {"interval": 0}  # (test_probe.py has the probe: here it was two more SSD300 forwards)
    events = EventBus()
    train_from_config(cfg, max_iters=1, work_dir=tmp_path / "run", events=events, console=False, pretrained=False)
    it = [e for e in events.history if e["type"] == "iter"]
    assert len(it) == 1 and torch.isfinite(torch.tensor(it[0]["loss"]))
    saved = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert saved["model_cfg"]["type"] == "SingleStageDetector"


@pytest.mark.slow
def test_mmdetections_own_ssd512_file_takes_a_training_step():
    """SSD512's file too: one SGD step on its loss changes the weights and the loss is finite."""
    torch.manual_seed(0)
    model = build_detector(CONFIGS["ssd512_coco"])
    model.train()
    model.backbone.requires_grad_(False)  # VGG16's backward: SSD300's file above trains through it
    batch = {"images": torch.rand(1, 3, 512, 512) * 2 - 1, "gt_boxes": [torch.tensor([[60.0, 80.0, 300.0, 400.0]])],
             "gt_labels": [torch.tensor([3])]}
    losses, _ = model.loss(batch)
    total = sum(losses.values())
    before = model.head.cls_convs[0].weight.detach().clone()
    total.backward()
    torch.optim.SGD(model.parameters(), lr=1e-3).step()
    assert torch.isfinite(total) and not torch.equal(before, model.head.cls_convs[0].weight)


def _mmdet_names(state: dict) -> dict:
    import re
    out = {}
    for key, value in state.items():
        key = re.sub(r"^stem\.0\.", "conv1.", re.sub(r"^stem\.1\.", "bn1.", key))
        out[re.sub(r"^stages\.(\d)\.", lambda m: f"layer{int(m[1]) + 1}.", key)] = value
    return out


@pytest.mark.parametrize("key", ["resnet50_caffe", "resnext50_32x4d", "resnet50_pytorch"])
def test_caffe_style_and_resnext_compute_mmdetections_features(key):
    """Same weights (made alike on both sides), same input: mmdetection's features, within float
    rounding; the pytorch-style network does not give the caffe-style features."""
    from detengine.models.retinanet import ResNetBackbone

    from .fixtures.make_resnet_styles_reference import CASES, filled
    ref = torch.load(Path(__file__).parent / "fixtures" / "mmdet_resnet_styles_reference.pt", weights_only=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def features(cfg):
        kw = {k: v for k, v in cfg.items() if k != "type"}
        net = ResNetBackbone(**kw)
        net.load_state_dict(ResNetBackbone.translate_pretrained(filled(_mmdet_names(net.state_dict()))))
        net.eval()
        with torch.no_grad():
            return net(x)

    outs = features(CASES[key])
    for out, r in zip(outs, ref[key], strict=True):
        assert list(out.shape) == r["shape"]
        torch.testing.assert_close(out.flatten()[:64], r["head"], rtol=1e-4, atol=1e-4)
        assert abs(float(out.abs().mean()) - r["abs_mean"]) < 1e-4 * r["abs_mean"]
    if key == "resnet50_caffe":
        pytorch_style = features(CASES["resnet50_pytorch"])
        assert not torch.allclose(pytorch_style[1].flatten()[:64], ref[key][1]["head"], rtol=1e-4, atol=1e-4)


def test_batch_augments_of_the_data_preprocessor_are_refused_not_skipped():
    cfg = dict(CONFIGS["retinanet_r50_fpn_1x_coco"])
    pre = dict(cfg["data_preprocessor"], batch_augments=[dict(type="BatchFixedSizePad", size=(1024, 1024))])
    with pytest.raises(ConfigBuildError, match="model.data_preprocessor.batch_augments"):
        build_detector(dict(cfg, data_preprocessor=pre))
    with pytest.raises(ConfigBuildError, match="pad_value"):
        build_detector(dict(cfg, data_preprocessor=dict(cfg["data_preprocessor"], pad_value=114)))


def test_an_initialisation_other_than_the_parts_own_is_refused():
    cfg = dict(CONFIGS["retinanet_r50_fpn_1x_coco"])
    custom = dict(type="Normal", layer="Conv2d", std=0.001)
    with pytest.raises(ConfigBuildError, match=r"model.bbox_head.init_cfg=.*not applied here"):
        build_detector(dict(cfg, bbox_head=dict(cfg["bbox_head"], init_cfg=custom)))
    with pytest.raises(ConfigBuildError, match=r"model.backbone.init_cfg=.*not applied here"):
        build_detector(dict(cfg, backbone=dict(cfg["backbone"], init_cfg=[cfg["backbone"]["init_cfg"], custom])))


def test_ssdlite_computes_mmdetections_outputs_from_its_checkpoint_names():
    """mmdetection's SSDLite weights (by mmdetection's names, made alike on both sides) load by
    name and give mmdetection's neck features and head maps, within float rounding."""
    from detengine.train.checkpoint import from_mmdet_names

    from .fixtures.make_resnet_styles_reference import filled
    ref = torch.load(Path(__file__).parent / "fixtures" / "mmdet_ssdlite_reference.pt", weights_only=True)
    model = build_detector(CONFIGS["ssdlite_mobilenetv2-scratch_8xb24-600e_coco"])
    mmdet_state = filled({k: torch.zeros(shape, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
                          for k, shape in ref["names"].items()})
    model.load_state_dict(from_mmdet_names(model, mmdet_state), strict=True)
    model.eval()
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model.neck(model.backbone(x))
        cls, reg = model.head(list(feats))
    for out, r in zip(feats, ref["neck"], strict=True):
        assert list(out.shape[1:]) == r["shape"][1:]
        torch.testing.assert_close(out.flatten()[:64], r["head"], rtol=1e-3, atol=1e-4)
        assert abs(float(out.abs().mean()) - r["abs_mean"]) < 1e-3 * r["abs_mean"]
    first = ref["cls"][0]                                     # level 0 class map: (A*C, H, W) there
    a_c, h, w = first["shape"][1:]
    ours = cls[0, :h * w * (a_c // 81)].reshape(h, w, a_c).permute(2, 0, 1)
    torch.testing.assert_close(ours.flatten()[:64], first["head"], rtol=1e-3, atol=1e-4)
    assert abs(float(cls.abs().mean()) - sum(r["abs_mean"] * math.prod(r["shape"]) for r in ref["cls"])
               / sum(math.prod(r["shape"]) for r in ref["cls"])) < 1e-3


def test_rtmdet_p6_is_mmdetections():
    """CSPNeXt ``arch='P6'`` (4 levels, strides 8-64) on RTMDet-l; numbers from mmdetection 3.3.0
    (rtmdet_l_8xb32-300e_coco.py with arch='P6', out_indices=(2, 3, 4, 5), neck in_channels
    [256, 512, 768, 1024], strides [8, 16, 32, 64]: built there at 640x640)."""
    import copy
    cfg = copy.deepcopy(CONFIGS["rtmdet_l_8xb32-300e_coco"])
    cfg["backbone"].update(arch="P6", out_indices=(2, 3, 4, 5))
    cfg["neck"]["in_channels"] = [256, 512, 768, 1024]
    cfg["bbox_head"]["anchor_generator"]["strides"] = [8, 16, 32, 64]
    with torch.device("meta"):
        model = build_detector(cfg).eval()
        feats = model.neck(model.backbone(torch.zeros(1, 3, 640, 640)))
    assert [_numel(model.backbone), _numel(model.neck), _numel(model.head)] == [38271392, 44078464, 2453840]
    assert [list(f.shape[1:]) for f in feats] == [[256, 80, 80], [256, 40, 40], [256, 20, 20], [256, 10, 10]]
    assert len(model.core.priors((640, 640))) == 8500


def test_what_mmdetection_builds_when_a_key_is_absent_is_what_is_built():
    """Defaults are mmdetection's: an RTMDet head without ``with_objectness`` would have an
    objectness branch (refused); CSPNeXt's BatchNorm without ``norm_cfg`` has eps 1e-3."""
    import copy
    cfg = copy.deepcopy(CONFIGS["rtmdet_tiny_8xb32-300e_coco"])
    del cfg["bbox_head"]["with_objectness"]
    with pytest.raises(ConfigBuildError, match="with_objectness"):
        build_detector(cfg)
    cfg = copy.deepcopy(CONFIGS["rtmdet_tiny_8xb32-300e_coco"])
    del cfg["backbone"]["norm_cfg"]
    bns = [m for m in build_detector(cfg).backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in bns} == {(1e-3, 0.03)}
    bns = [m for m in build_detector(CONFIGS["rtmdet_tiny_8xb32-300e_coco"]).neck.modules()
           if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in bns} == {(1e-5, 0.1)}      # norm_cfg=dict(type='SyncBN'): PyTorch's


def test_what_the_review_found_is_built_as_mmdetection_or_refused():
    """An AnchorHead (1x1 predictors) is refused for the network; a ResNeXt with groups=1 is a
    ResNet (mmdetection's width = planes); SSDHead without norm/act has neither (its defaults)."""
    import copy
    cfg = copy.deepcopy(CONFIGS["retinanet_r50_fpn_1x_coco"])
    cfg["bbox_head"]["type"] = "AnchorHead"
    with pytest.raises(ConfigBuildError, match="AnchorHead"):
        build_detector(cfg)
    x = copy.deepcopy(CONFIGS["retinanet_x101-32x4d_fpn_1x_coco"])
    x["backbone"].update(groups=1, depth=101)
    r101 = CONFIGS["retinanet_r101_fpn_1x_coco"]
    with torch.device("meta"):
        assert _numel(build_detector(x).backbone) == REF["retinanet_r101_fpn_1x_coco"]["backbone_params"]
        lite = copy.deepcopy(CONFIGS["ssdlite_mobilenetv2-scratch_8xb24-600e_coco"])
        for key in ("norm_cfg", "act_cfg"):
            del lite["bbox_head"][key]
        head = build_detector(lite).head
    assert r101["backbone"]["type"] == "ResNet"
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.ReLU6)) for m in head.modules())
    with pytest.raises(ConfigBuildError, match="norm_cfg"):
        build_detector(dict(CONFIGS["ssdlite_mobilenetv2-scratch_8xb24-600e_coco"],
                            backbone=dict(CONFIGS["ssdlite_mobilenetv2-scratch_8xb24-600e_coco"]["backbone"],
                                          norm_cfg=None)))
