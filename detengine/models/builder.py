"""Model config (mmdetection layout) -> :class:`DenseDetector`."""
from __future__ import annotations

import copy

import torch

from ..builder import ConfigBuildError, build_head_core
from .atss import ATSSHeadModule
from .csp_darknet import YOLOXPAFPN, CSPDarknet
from .detector import DenseDetector
from .fcos import FCOSHeadModule
from .gfl import GFLHeadModule
from .mobilenet import MobileNetV2, apply_init_cfg
from .retinanet import FPN, ResNetBackbone, RetinaHeadModule
from .rtmdet import CSPNeXt, CSPNeXtPAFPN, RTMDetSepBNHeadModule
from .spec import check_model, detector_kind
from .ssd import SSDVGG, SSDHeadModule, SSDNeck
from .tinyssd import TinySSDBaseNet
from .tood import TOODHeadModule
from .yolox import YOLOXHeadModule

__all__ = ["build_detector", "DETECTOR_TYPES"]


def _same(what: str, given, built) -> None:
    """A channel list the config states must be the one the parts produce."""
    if given is not None and list(given if isinstance(given, (list, tuple)) else [given]) != list(built):
        raise ConfigBuildError(f"{what}={given!r}, but the parts before it give {list(built)}")


def _levels(core, outs: int, neck: str) -> None:
    strides = getattr(core.prior_generator, "strides", None)
    if strides is not None and len(strides) != outs:
        raise ConfigBuildError(f"{neck} gives {outs} feature maps, but the head's prior generator has "
                               f"{len(strides)} levels (strides {list(strides)})")


def _conv_args(part: dict) -> dict:
    """A part's ``norm_cfg`` / ``act_cfg`` as ConvModule arguments (BatchNorm's eps and momentum act)."""
    norm = part.get("norm_cfg") or {}
    return dict(act=(part.get("act_cfg") or {"type": "ReLU"})["type"], bn_eps=norm.get("eps", 1e-5),
                bn_momentum=norm.get("momentum", 0.1))


def _ssd(model, core):
    b = model.get("backbone", {})
    if b.get("type") == "MobileNetV2":                  # SSDLite
        backbone = MobileNetV2(widen_factor=b.get("widen_factor", 1.0), out_indices=b.get("out_indices", (1, 2, 4, 7)),
                               frozen_stages=b.get("frozen_stages", -1), norm_eval=b.get("norm_eval", False),
                               **_conv_args({"act_cfg": {"type": "ReLU6"}, **b}))
    else:
        backbone = SSDVGG(**{k: v for k, v in b.items() if k not in ("type", "init_cfg")})
    n = model["neck"]
    _same("model.neck.in_channels", n.get("in_channels"), backbone.out_channels)
    neck = SSDNeck(**{k: v for k, v in n.items() if k not in ("type", "init_cfg", "norm_cfg", "act_cfg", "conv_cfg")},
                   norm=bool(n.get("norm_cfg")), **_conv_args(n))
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), n["out_channels"])
    _levels(core, len(n["out_channels"]), "model.neck.out_channels")
    head = SSDHeadModule(in_channels=n["out_channels"], num_base_priors=core.num_base_priors,
                         cls_channels=core.cls_channels(), use_depthwise=h.get("use_depthwise", False),
                         norm=bool(h.get("norm_cfg")),    # SSDHead's defaults: no norm, no activation
                         **{**_conv_args(h), "act": (h.get("act_cfg") or {}).get("type")})
    for part, module in (("backbone", backbone), ("neck", neck), ("bbox_head", head)):
        init = model[part].get("init_cfg")
        if init is not None and not (isinstance(init, dict) and init.get("type") == "Pretrained"):
            apply_init_cfg(module, init)                 # SSDLite's own initialisation, as mmengine applies it
    return backbone, neck, head


def _bottleneck_width(backbone: dict) -> int:
    """torchvision's ``width_per_group`` for mmdetection's ResNet / ResNeXt: ResNeXt's
    ``base_width`` (default 4) when grouped; with ``groups=1`` mmdetection's ResNeXt block is a
    ResNet block (width = planes), which is 64 here."""
    if backbone.get("type") != "ResNeXt" or backbone.get("groups", 1) == 1:
        return 64
    return backbone.get("base_width", 4)


def _resnet_fpn(model, core):
    """ResNet / ResNeXt + FPN (RetinaNet, FCOS): (backbone, neck, FPN out_channels)."""
    b = model.get("backbone", {})  # mmdetection's ResNet defaults where the config is silent
    backbone = ResNetBackbone(depth=b.get("depth", 50), out_indices=b.get("out_indices", (0, 1, 2, 3)),
                              frozen_stages=b.get("frozen_stages", -1), norm_eval=b.get("norm_eval", True),
                              weights_path=b.get("weights_path"),
                              norm_requires_grad=(b.get("norm_cfg") or {}).get("requires_grad", True),
                              zero_init_residual=b.get("zero_init_residual", True),
                              style=b.get("style", "pytorch"), groups=b.get("groups", 1),
                              base_width=_bottleneck_width(b))
    _norm_of(backbone, b.get("norm_cfg"), eps=1e-5, momentum=0.1)
    n = model.get("neck", {})
    out = n["out_channels"]
    _same("model.neck.in_channels", n["in_channels"], backbone.out_channels)
    start = n.get("start_level", 0)
    if not 0 <= start < len(backbone.out_channels):
        raise ConfigBuildError(f"model.neck.start_level={start} but the backbone gives {len(backbone.out_channels)} "
                               f"feature maps")
    extra = n.get("add_extra_convs", False)
    neck = FPN(in_channels=backbone.out_channels[start:], out_channels=out, num_outs=n["num_outs"],
               add_extra_convs="on_input" if extra is True else extra, start_level=start,
               relu_before_extra_convs=n.get("relu_before_extra_convs", False))
    _levels(core, n["num_outs"], f"model.neck (FPN, num_outs={n['num_outs']})")
    return backbone, neck, out


def _retinanet(model, core):
    backbone, neck, out = _resnet_fpn(model, core)
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [out])
    nb = core.num_base_priors
    if len(set(nb)) != 1:
        raise ConfigBuildError(f"RetinaHead shares its convs across levels; anchors per cell differ: {nb}")
    head = RetinaHeadModule(in_channels=out, feat_channels=h.get("feat_channels", 256),
                            stacked_convs=h.get("stacked_convs", 4), num_base_priors=nb[0],
                            cls_channels=core.cls_channels())
    return backbone, neck, head


def _rtmdet(model, core):
    b = model.get("backbone", {})  # mmdetection's defaults where the config is silent
    backbone = CSPNeXt(deepen_factor=b.get("deepen_factor", 1.0), widen_factor=b.get("widen_factor", 1.0),
                       expand_ratio=b.get("expand_ratio", 0.5), channel_attention=b.get("channel_attention", True),
                       arch=b.get("arch", "P5"), out_indices=b.get("out_indices", (2, 3, 4)))
    n = model.get("neck", {})
    _same("model.neck.in_channels", n.get("in_channels"), backbone.out_channels)
    _levels(core, len(backbone.out_channels), "model.neck (CSPNeXtPAFPN)")
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [n["out_channels"]])
    if h.get("with_objectness", True):
        raise ConfigBuildError("model.bbox_head.with_objectness=True (mmdetection's default when the key is absent): "
                               "the objectness branch is not built here; RTMDet's configs set with_objectness=False")
    neck = CSPNeXtPAFPN(in_channels=backbone.out_channels, out_channels=n["out_channels"],
                        num_csp_blocks=n.get("num_csp_blocks", 3), expand_ratio=n.get("expand_ratio", 0.5))
    head = RTMDetSepBNHeadModule(in_channels=n["out_channels"], feat_channels=h.get("feat_channels", 256),
                                 stacked_convs=h.get("stacked_convs", 4), strides=core.prior_generator.strides,
                                 cls_channels=core.cls_channels(), pred_kernel_size=h.get("pred_kernel_size", 1),
                                 share_conv=h.get("share_conv", True), exp_on_reg=h.get("exp_on_reg", False))
    for part, module in (("backbone", backbone), ("neck", neck), ("bbox_head", head)):
        _norm_of(module, model[part].get("norm_cfg"), eps=1e-3, momentum=0.03)   # mmdetection's default BN here
    return backbone, neck, head


def _norm_of(module, norm_cfg: dict | None, *, eps: float, momentum: float) -> None:
    """Every BatchNorm of ``module`` with ``norm_cfg``'s eps and momentum; a config that names
    only the type gets PyTorch's (as mmcv builds it), no ``norm_cfg`` the part's own default."""
    if norm_cfg is not None:
        eps, momentum = norm_cfg.get("eps", 1e-5), norm_cfg.get("momentum", 0.1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps, m.momentum = eps, momentum


def _tinyssd(model, core):
    b = model.get("backbone", {})
    backbone = TinySSDBaseNet(num_filters=b.get("num_filters", (3, 16, 32, 64)))
    head = SSDHeadModule(in_channels=backbone.out_channels, num_base_priors=core.num_base_priors,
                         cls_channels=core.cls_channels(), xavier=False)
    return backbone, None, head


def _fcos(model, core):
    backbone, neck, out = _resnet_fpn(model, core)
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [out])
    return backbone, neck, FCOSHeadModule.from_config(h, in_channels=out, strides=core.prior_generator.strides,
                                                      num_classes=core.num_classes)


def _atss(model, core):
    backbone, neck, out = _resnet_fpn(model, core)
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [out])
    nb = core.num_base_priors
    if len(set(nb)) != 1:
        raise ConfigBuildError(f"ATSSHead shares its convs across levels; anchors per cell differ: {nb}")
    return backbone, neck, ATSSHeadModule.from_config(h, in_channels=out, num_levels=len(nb), num_base_priors=nb[0],
                                                      num_classes=core.num_classes)


def _gfl(model, core):
    backbone, neck, out = _resnet_fpn(model, core)
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [out])
    return backbone, neck, GFLHeadModule.from_config(h, in_channels=out, num_levels=len(core.num_base_priors),
                                                     num_classes=core.num_classes)


def _tood(model, core):
    backbone, neck, out = _resnet_fpn(model, core)
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [out])
    return backbone, neck, TOODHeadModule.from_config(h, in_channels=out, num_classes=core.num_classes,
                                                      prior_generator=core.prior_generator, bbox_coder=core.bbox_coder)


def _yolox(model, core):
    """CSPDarknet + YOLOXPAFPN + YOLOXHead; BatchNorm eps 1e-3 / momentum 0.03 where ``norm_cfg``
    is silent (mmdetection's default for these three parts), Swish activations."""
    b = model.get("backbone", {})  # mmdetection's defaults where the config is silent
    act = lambda part: (part.get("act_cfg") or {"type": "Swish"})["type"]  # noqa: E731
    backbone = CSPDarknet(arch=b.get("arch", "P5"), deepen_factor=b.get("deepen_factor", 1.0),
                          widen_factor=b.get("widen_factor", 1.0), out_indices=b.get("out_indices", (2, 3, 4)),
                          frozen_stages=b.get("frozen_stages", -1), use_depthwise=b.get("use_depthwise", False),
                          spp_kernal_sizes=b.get("spp_kernal_sizes", (5, 9, 13)), act=act(b),
                          norm_eval=b.get("norm_eval", False))
    n = model.get("neck", {})
    _same("model.neck.in_channels", n.get("in_channels"), backbone.out_channels)
    _levels(core, len(backbone.out_channels), "model.neck (YOLOXPAFPN)")
    neck = YOLOXPAFPN(in_channels=backbone.out_channels, out_channels=n["out_channels"],
                      num_csp_blocks=n.get("num_csp_blocks", 3), use_depthwise=n.get("use_depthwise", False),
                      act=act(n))
    h = model["bbox_head"]
    _same("model.bbox_head.in_channels", h.get("in_channels"), [n["out_channels"]])
    head = YOLOXHeadModule.from_config(h, num_classes=core.num_classes, num_levels=len(core.prior_generator.strides))
    for part, module in (("backbone", backbone), ("neck", neck), ("bbox_head", head)):
        _norm_of(module, model[part].get("norm_cfg"), eps=1e-3, momentum=0.03)
        for p in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            p.requires_grad_((model[part].get("norm_cfg") or {}).get("requires_grad", True))
    backbone._freeze()
    return backbone, neck, head


DETECTOR_TYPES = {"SSD": _ssd, "RetinaNet": _retinanet, "RTMDet": _rtmdet, "TinySSD": _tinyssd, "FCOS": _fcos,
                  "ATSS": _atss, "GFL": _gfl, "TOOD": _tood, "YOLOX": _yolox}


def build_detector(model_cfg: dict) -> DenseDetector:
    """A trainable detector for a ``model`` config dict (SSD, RetinaNet, RTMDet, FCOS, ATSS, GFL, TOOD, YOLOX, TinySSD): exactly
    the network mmdetection builds from it, or ``ConfigBuildError`` naming the key and why
    (:mod:`detengine.models.spec`)."""
    model_cfg = copy.deepcopy(model_cfg)
    kind = detector_kind(model_cfg)
    if kind not in DETECTOR_TYPES:
        raise ConfigBuildError(f"model.type must be one of {sorted(DETECTOR_TYPES)} (or SingleStageDetector with "
                               f"one of their heads), got {model_cfg.get('type')!r}")
    check_model(model_cfg)
    core = build_head_core(model_cfg)
    backbone, neck, head = DETECTOR_TYPES[kind](model_cfg, core)
    return DenseDetector(model_cfg=model_cfg, backbone=backbone, neck=neck, head=head, core=core)
