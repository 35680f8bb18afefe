"""mmdetection checkpoints of FCOS, ATSS and GFL load by name: their heads' towers are ConvModules with
GroupNorm (``cls_convs.N.conv`` and ``cls_convs.N.gn`` under the same N), which keep mmdetection's
names here; only RetinaHead's towers (conv, ReLU interleaved in one Sequential) are renumbered."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from detengine.models import build_detector
from detengine.models.fcos import FCOSHeadModule
from detengine.train.checkpoint import from_mmdet_names, load_state_checked, mmdet_to_detscope_name
from tests.engine.fixtures.det_random import det_randn
from tests.engine.fixtures.make_fcos_reference import SEEDS, featmap_sizes
from tests.engine.fixtures.make_resnet_styles_reference import filled
from tests.engine.levels import flat_levels

from .test_checkpoint_names import mmdet_retinanet_r50_keys

FIXTURES = Path(__file__).parent / "fixtures"


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


class _HeadOnly(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head


def test_an_mmdetection_fcos_head_state_loads_by_name_and_gives_mmdetections_outputs():
    """The fixture's FCOSHead names (made by the real mmdetection, weights filled by those names),
    under ``bbox_head.``, load strictly into DetScope's head and give mmdetection's outputs."""
    ref = torch.load(FIXTURES / "mmdet_fcos_reference.pt", weights_only=True)
    case = ref["module"]["plain"]
    weights = filled({k: torch.zeros(shape) for k, shape in case["names"]})
    state = {f"bbox_head.{k}": v for k, v in weights.items()}
    head = FCOSHeadModule(in_channels=8, feat_channels=8, stacked_convs=2, strides=ref["meta"]["strides"],
                          num_classes=4, num_groups=4)
    model = _HeadOnly(head)
    load_state_checked(model, state, "fcos_mmdet.pth")
    assert torch.equal(head.cls_convs[1].gn.weight, state["bbox_head.cls_convs.1.gn.weight"])
    feats = [det_randn((1, 8, h, w), SEEDS["feat"] + i) for i, (h, w) in enumerate(featmap_sizes())]
    with torch.no_grad():
        cls, reg = model.eval().head(feats)
    expected = flat_levels([torch.cat([c, t], dim=1) for c, t in zip(case["cls"], case["ctr"])], 5)
    torch.testing.assert_close(cls, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(reg, flat_levels(case["reg"], 4), rtol=1e-4, atol=1e-6)


def _tower_keys(prefix: str, stacked: int, own: tuple[str, ...]) -> list[str]:
    """mmdetection's FCOSHead / ATSSHead names: GN ConvModule towers (no conv bias), the
    predictors, the per-level scales."""
    keys = [f"bbox_head.{b}_convs.{i}.{m}.{f}" for b in ("cls", "reg") for i in range(stacked)
            for m, fields in (("conv", ("weight",)), ("gn", ("weight", "bias"))) for f in fields]
    keys += [f"bbox_head.{name}.{f}" for name in own for f in ("weight", "bias")]
    return keys + [f"bbox_head.scales.{i}.scale" for i in range(5)]


def test_full_fcos_atss_and_gfl_checkpoints_map_onto_every_parameter():
    """ResNet-50 + FPN + the GN head of mmdetection's fcos / atss / gfl configs: every mmdetection key
    translates to one DetScope key, and together they are the model's state dict."""
    ref = torch.load(FIXTURES / "mmdet_fcos_reference.pt", weights_only=True)
    atss = torch.load(FIXTURES / "mmdet_atss_reference.pt", weights_only=True)
    body = [k for k in mmdet_retinanet_r50_keys() if not k.startswith("bbox_head.")]
    gfl = torch.load(FIXTURES / "mmdet_gfl_reference.pt", weights_only=True)
    cases = [(ref["configs"]["fcos_r50-caffe_fpn_gn-head_1x_coco"]["model"], ("conv_cls", "conv_reg", "conv_centerness")),
             (atss["configs"]["atss_r50_fpn_1x_coco"]["model"], ("atss_cls", "atss_reg", "atss_centerness")),
             (gfl["configs"]["gfl_r50_fpn_1x_coco"]["model"], ("gfl_cls", "gfl_reg"))]
    for model_cfg, own in cases:
        with torch.device("meta"):
            model = build_detector(model_cfg)
        keys = body + _tower_keys("bbox_head", 4, own) + (["bbox_head.integral.project"] if "gfl_cls" in own else [])
        renamed = from_mmdet_names(model, {k: torch.empty(0) for k in keys})
        assert sorted(renamed) == sorted(model.state_dict()), model_cfg["type"]


def test_the_retinahead_rule_renumbers_only_retinaheads_towers():
    assert mmdet_to_detscope_name("bbox_head.cls_convs.1.conv.weight", 5) == "head.cls_convs.2.weight"
    assert mmdet_to_detscope_name("bbox_head.cls_convs.1.conv.weight", 5, retina_towers=False) == \
        "head.cls_convs.1.conv.weight"
