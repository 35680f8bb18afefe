"""Model config (mmdetection layout) -> :class:`DenseDetector`."""
from __future__ import annotations

import copy

from ..builder import ConfigBuildError, build_head_core
from .detector import DenseDetector
from .retinanet import FPN, ResNetBackbone, RetinaHeadModule
from .rtmdet import CSPNeXt, CSPNeXtPAFPN, RTMDetSepBNHeadModule
from .ssd import SSDVGG, SSDHeadModule, SSDNeck
from .tinyssd import TinySSDBaseNet

__all__ = ["build_detector", "DETECTOR_TYPES"]


def _ssd(model, core):
    backbone = SSDVGG(**{k: v for k, v in model.get("backbone", {}).items() if k != "type"})
    neck_cfg = {k: v for k, v in model["neck"].items() if k != "type"}
    neck = SSDNeck(**neck_cfg)
    head = SSDHeadModule(in_channels=neck_cfg["out_channels"], num_base_priors=core.num_base_priors,
                         cls_channels=core.cls_channels())
    return backbone, neck, head


def _retinanet(model, core):
    b = model.get("backbone", {})
    backbone = ResNetBackbone(depth=b.get("depth", 50), frozen_stages=b.get("frozen_stages", -1),
                              norm_eval=b.get("norm_eval", False), weights_path=b.get("weights_path"),
                              norm_requires_grad=(b.get("norm_cfg") or {}).get("requires_grad", True))
    n = model.get("neck", {})
    out = n.get("out_channels", 256)
    neck = FPN(in_channels=backbone.out_channels, out_channels=out, num_outs=n.get("num_outs", 5),
               add_extra_convs=n.get("add_extra_convs", "on_input"),
               relu_before_extra_convs=n.get("relu_before_extra_convs", False))
    h = model["bbox_head"]
    nb = core.num_base_priors
    if len(set(nb)) != 1:
        raise ConfigBuildError(f"RetinaHead shares its convs across levels; anchors per cell differ: {nb}")
    head = RetinaHeadModule(in_channels=out, feat_channels=h.get("feat_channels", 256),
                            stacked_convs=h.get("stacked_convs", 4), num_base_priors=nb[0],
                            cls_channels=core.cls_channels())
    return backbone, neck, head


def _rtmdet(model, core):
    b = model.get("backbone", {})
    backbone = CSPNeXt(deepen_factor=b.get("deepen_factor", 0.167), widen_factor=b.get("widen_factor", 0.375),
                       expand_ratio=b.get("expand_ratio", 0.5), channel_attention=b.get("channel_attention", True))
    n = model.get("neck", {})
    neck = CSPNeXtPAFPN(in_channels=backbone.out_channels, out_channels=n.get("out_channels", 96),
                        num_csp_blocks=n.get("num_csp_blocks", 1), expand_ratio=n.get("expand_ratio", 0.5))
    h = model["bbox_head"]
    head = RTMDetSepBNHeadModule(in_channels=n.get("out_channels", 96), feat_channels=h.get("feat_channels", 96),
                                 stacked_convs=h.get("stacked_convs", 2), strides=core.prior_generator.strides,
                                 cls_channels=core.cls_channels(), pred_kernel_size=h.get("pred_kernel_size", 1),
                                 share_conv=h.get("share_conv", True), exp_on_reg=h.get("exp_on_reg", False))
    return backbone, neck, head


def _tinyssd(model, core):
    b = model.get("backbone", {})
    backbone = TinySSDBaseNet(num_filters=b.get("num_filters", (3, 16, 32, 64)))
    head = SSDHeadModule(in_channels=backbone.out_channels, num_base_priors=core.num_base_priors,
                         cls_channels=core.cls_channels(), xavier=False)
    return backbone, None, head


DETECTOR_TYPES = {"SSD": _ssd, "RetinaNet": _retinanet, "RTMDet": _rtmdet, "TinySSD": _tinyssd}


def build_detector(model_cfg: dict) -> DenseDetector:
    """A trainable detector for a ``model`` config dict (SSD, RetinaNet, RTMDet, TinySSD)."""
    model_cfg = copy.deepcopy(model_cfg)
    kind = model_cfg.get("type")
    if kind not in DETECTOR_TYPES:
        raise ConfigBuildError(f"model.type must be one of {sorted(DETECTOR_TYPES)}, got {kind!r}")
    core = build_head_core(model_cfg)
    backbone, neck, head = DETECTOR_TYPES[kind](model_cfg, core)
    return DenseDetector(model_cfg=model_cfg, backbone=backbone, neck=neck, head=head, core=core)
