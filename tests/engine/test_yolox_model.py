"""The YOLOX network against mmdetection 3.3.0 (``fixtures/make_yolox_head_reference.py``): mmdetection's
YOLOX-tiny state dict (its own names, weights made by name) loads through the checkpoint loader and
gives mmdetection's class / box / objectness maps; the initialisation is mmdetection's; every file
of mmdetection's ``configs/yolox/`` builds exactly mmdetection's network or is refused with the
reason."""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch

from detengine.builder import ConfigBuildError, build_head_core
from detengine.models import build_detector
from detengine.train.checkpoint import load_state_checked
from tests.engine.fixtures.det_random import det_randn
from tests.engine.fixtures.make_resnet_styles_reference import filled
from tests.engine.fixtures.make_yolox_head_reference import model_input
from tests.engine.levels import flat_levels

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_yolox_head_reference.pt"


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def without_batch_augments(model_cfg: dict) -> dict:
    """mmdetection's model dict less ``data_preprocessor.batch_augments`` (BatchSyncRandomResize, the
    multi-scale training the trainer applies): the network alone."""
    cfg = copy.deepcopy(model_cfg)
    cfg["data_preprocessor"].pop("batch_augments", None)
    return cfg


def _mmdet_name(name: str) -> str:
    """A module name of ours as mmdetection names it (``stages.N`` is ``stageN+1``, ``head`` is
    ``bbox_head``)."""
    name = re.sub(r"^backbone\.stages\.(\d+)", lambda m: f"backbone.stage{int(m[1]) + 1}", name)
    return re.sub(r"^head\.", "bbox_head.", name)


def _tiny(R):
    return without_batch_augments(R["configs"]["yolox_tiny_8xb8-300e_coco"]["model"])


def test_mmdetections_yolox_tiny_state_dict_loads_by_name_and_gives_its_outputs(R):
    """The real mmdetection's names (``backbone.stage1..4``, ``bbox_head.multi_level_*``) load strictly
    through the checkpoint loader, and the network computes mmdetection's maps (eval mode)."""
    ref = R["model"]
    state = filled({k: torch.zeros(shape, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
                    for k, shape in ref["names"]})
    assert any(k.startswith("backbone.stage4.1.poolings") for k in state) is False     # max pools: no weights
    assert "backbone.stage4.1.conv1.conv.weight" in state and "bbox_head.multi_level_conv_obj.2.bias" in state
    model = build_detector(_tiny(R))
    assert len(model.state_dict()) == len(state)
    load_state_checked(model, state, "yolox_tiny_mmdet.pth")
    assert torch.equal(model.backbone.stages[3][1].conv1.conv.weight, state["backbone.stage4.1.conv1.conv.weight"])
    model.eval()
    with torch.no_grad():
        cls, reg, sizes = model(model_input(det_randn))
    assert sizes == [tuple(c.shape[-2:]) for c in ref["cls"]]
    expected_cls = flat_levels([torch.cat([c, o], 1) for c, o in zip(ref["cls"], ref["obj"])], 81)
    torch.testing.assert_close(cls, expected_cls, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reg, flat_levels(ref["reg"], 4), rtol=1e-5, atol=1e-5)


def test_the_initialisation_is_mmdetections(R):
    """mmengine's Kaiming init_cfg (uniform, a=sqrt(5), fan_in: |w| <= 1/sqrt(fan_in)) on every conv,
    biases 0 except the class and objectness predictors' bias_init_with_prob(0.01)."""
    torch.manual_seed(0)
    model = build_detector(_tiny(R))
    ours = {_mmdet_name(n): m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    ref = R["model"]
    assert list(ours) == [name for name, *_ in ref["init_convs"]]
    for name, fan_in, max_abs, _ in ref["init_convs"]:
        bound = 1 / math.sqrt(fan_in)
        assert max_abs <= bound * (1 + 1e-6), name        # mmdetection's own draw is uniform within the bound
        weight = ours[name].weight.detach()
        assert weight[0].numel() == fan_in and float(weight.abs().max()) <= bound * (1 + 1e-6), name
        if weight.numel() > 1000:                        # a uniform draw of that many values nears its bound
            assert float(weight.abs().max()) > 0.95 * bound and max_abs > 0.95 * bound, name
    for name, bias in ref["init_biases"].items():
        torch.testing.assert_close(ours[name].bias.detach(), bias, rtol=0, atol=1e-7, msg=name)
    assert all(ours[n].bias is None for n, *_ in ref["init_convs"] if n not in ref["init_biases"])
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in bns} == {(1e-3, 0.03)}
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)


BUILT = [n for n in ("yolox_tiny_8xb8-300e_coco", "yolox_s_8xb8-300e_coco", "yolox_m_8xb8-300e_coco",
                     "yolox_l_8xb8-300e_coco", "yolox_x_8xb8-300e_coco", "yolox_nano_8xb8-300e_coco")]


@pytest.mark.parametrize("name", BUILT)
def test_mmdetections_yolox_files_build_its_network_less_the_multi_scale_batch_augment(R, name):
    """Parameters per part, feature shapes and points at 320x320 as mmdetection built them (nano:
    depthwise-separable convs); the debug views' head core from the file as it is."""
    ref = R["configs"][name]
    with torch.device("meta"):
        model = build_detector(without_batch_augments(ref["model"])).eval()
        feats = model.neck(model.backbone(torch.zeros(1, 3, *R["meta"]["config_input"])))
    numel = [sum(p.numel() for p in m.parameters()) for m in (model, model.backbone, model.neck, model.head)]
    assert numel == [ref["params"], ref["backbone_params"], ref["neck_params"], ref["head_params"]]
    assert [list(f.shape[1:]) for f in feats] == ref["feature_shapes"]
    assert len(build_head_core(ref["model"]).priors(tuple(R["meta"]["config_input"]))) == ref["num_priors"]


@pytest.mark.parametrize("name", BUILT)
def test_the_files_as_given_build_with_their_batch_augment(R, name):
    """``BatchSyncRandomResize`` (multi-scale training every 10 iterations) is applied by the trainer
    (test_batch_sync_resize.py): the file as given builds the same network."""
    with torch.device("meta"):
        model = build_detector(R["configs"][name]["model"])
    assert sum(p.numel() for p in model.parameters()) == R["configs"][name]["params"]


def test_the_tta_file_has_no_model_and_is_refused(R):
    from detengine.trace import model_config
    entry = R["configs"]["yolox_tta"]
    assert "model" not in entry and "no model" in entry["error"]
    with pytest.raises(ValueError, match="no 'model'"):
        model_config({"tta_model": {"type": "DetTTAModel"}, "tta_pipeline": []})


@pytest.mark.parametrize("key, value, message", [
    ("arch_ovewrite", [[64, 128, 3, True, False]], "model.backbone.arch_ovewrite"),
    ("act_cfg", dict(type="LeakyReLU", negative_slope=0.1), "model.backbone.act_cfg"),
    ("norm_cfg", dict(type="GN", num_groups=8), "model.backbone.norm_cfg"),
])
def test_a_backbone_key_that_would_change_the_network_is_refused(R, key, value, message):
    cfg = _tiny(R)
    cfg["backbone"][key] = value
    with pytest.raises(ConfigBuildError, match=message):
        build_detector(cfg)


def test_head_keys_that_are_not_built_are_refused(R):
    for key, value in (("dcn_on_last_conv", True), ("conv_bias", True)):
        cfg = _tiny(R)
        cfg["bbox_head"][key] = value
        with pytest.raises(ConfigBuildError, match=f"model.bbox_head.{key}"):
            build_detector(cfg)


def test_frozen_stages_and_norm_eval_act_as_in_mmdetection(R):
    cfg = _tiny(R)
    cfg["backbone"].update(frozen_stages=1, norm_eval=True)
    model = build_detector(cfg).train()
    frozen = [model.backbone.stem, model.backbone.stages[0]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.backbone.stages[1].parameters())
    assert not any(m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.neck.training


def test_an_mmdetection_yolox_checkpoint_file_loads_and_predicts_as_its_state(R, tmp_path):
    """A ``.pth`` as mmdetection writes it (``state_dict`` by its names, ``data_preprocessor`` buffers,
    ``meta``) loads through ``load_model_weights`` (eval, export, --load-from) into the shipped-layout
    model: the same tensors, the same detections as loading the state directly."""
    from detengine.train.checkpoint import load_model_weights
    names = dict(R["model"]["names"])
    state = filled({k: torch.zeros(shape, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
                    for k, shape in names.items()})
    with torch.no_grad():
        state["bbox_head.multi_level_conv_obj.0.bias"].fill_(3.0)        # some detections above score_thr
        state["bbox_head.multi_level_conv_cls.0.bias"].fill_(1.0)
    path = tmp_path / "yolox_tiny_mmdet.pth"
    torch.save({"meta": {"dataset_meta": {"classes": [f"c{i}" for i in range(80)]}},
                "state_dict": {"data_preprocessor.mean": torch.zeros(3, 1, 1), **state}}, path)
    direct, from_file = build_detector(_tiny(R)).eval(), build_detector(_tiny(R)).eval()
    load_state_checked(direct, state, "state")
    load_model_weights(from_file, path)
    for key, value in direct.state_dict().items():
        assert torch.equal(from_file.state_dict()[key], value), key
    images = model_input(det_randn)
    a, b = direct.predict({"images": images})[0], from_file.predict({"images": images})[0]
    assert a.scores.numel() > 0 and torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels)
