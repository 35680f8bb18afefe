"""What each backbone, neck and head of a config may say: a key either changes what is built
(it acts), or has the one value DetScope builds (mmdetection's default, or a value the network
does not depend on), or the config is refused with the key and the reason. No silent
substitution: a ResNeXt is never built as a ResNet, a caffe-style ResNet never as a pytorch one.

:func:`check_model` runs before anything is allocated; the head core's own keys (priors,
coder, assigner, losses) are checked by :mod:`detengine.builder`.
"""
from __future__ import annotations

from ..builder import ConfigBuildError

__all__ = ["check_model", "REFUSED_TYPES", "detector_kind"]

ACTS = object()          # the builder reads this key
_NORMS = ("BN", "SyncBN")  # SyncBN is BatchNorm on one process; under DDP the trainer converts it

#: types mmdetection configs use that DetScope does not build, with the reason
REFUSED_TYPES = {
    "ResNetV1d": "ResNetV1d (deep stem, average-pool downsampling) is not built here",
    "Res2Net": "Res2Net is not built here",
    "RegNet": "RegNet is not built here",
    "HRNet": "HRNet is not built here",
    "SwinTransformer": "Swin Transformer backbones are not built here",
    "mmdet.SwinTransformer": "Swin Transformer backbones are not built here",
    "ConvNeXt": "ConvNeXt backbones are not built here",
    "mmpretrain.ConvNeXt": "ConvNeXt backbones are not built here",
    "PVT": "PVT backbones are not built here",
    "PVTv2": "PVTv2 backbones are not built here",
    "EfficientNet": "EfficientNet backbones are not built here",
    "NASFPN": "NAS-FPN is not built here",
    "PAFPN": "PAFPN is not built here",
    "FPG": "FPG is not built here",
    "BFP": "BFP is not built here",
    "ChannelMapper": "ChannelMapper is not built here",
    "AnchorHead": "AnchorHead (1x1 conv_cls / conv_reg, no conv tower) is not built here; RetinaHead is",
    "RTMDetHead": "RTMDetHead (convs not shared across levels, no separate BN) is not built here; "
                  "RTMDetSepBNHead is",
}


def _value(expected, why: str = ""):
    """A rule: the key must hold one of ``expected`` (mmdetection's default, what is built)."""
    options = expected if isinstance(expected, list) else [expected]

    def check(value, where):
        if _norm(value) not in [_norm(o) for o in options]:
            shown = " or ".join(repr(o) for o in options)
            raise ConfigBuildError(f"{where}={value!r} is not built here{': ' + why if why else ''} "
                                   f"(DetScope builds {shown})")
    return check


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _norm_cfg(value, where):
    """BatchNorm (``BN``, or ``SyncBN``: BatchNorm on one process, converted under DDP); its
    ``eps`` / ``momentum`` / ``requires_grad`` act."""
    if value is None or not isinstance(value, dict) or value.get("type") not in _NORMS or \
            set(value) - {"type", "requires_grad", "eps", "momentum"}:
        raise ConfigBuildError(f"{where}={value!r} is not built here (BatchNorm: dict(type='BN' or 'SyncBN', "
                               f"eps=..., momentum=..., requires_grad=...))")


def _act(name):
    def check(value, where):
        if not isinstance(value, dict) or value.get("type") != name or set(value) - {"type", "inplace"}:
            raise ConfigBuildError(f"{where}={value!r} is not built here (dict(type={name!r}))")
    return check


def _anything(value, where):
    return None


def _pretrained_only(value, where):
    """``init_cfg``: a backbone's ``Pretrained`` checkpoint acts (:mod:`detengine.pretrained`); any
    other initialisation would differ from the one built (mmdetection's default for the part)."""
    entries = value if isinstance(value, list) else [value]
    other = [e for e in entries if e is not None and not (isinstance(e, dict) and e.get("type") == "Pretrained")]
    if other:
        raise ConfigBuildError(f"{where}={value!r} is not applied here: parts start from mmdetection's default "
                               f"initialisation, or from a Pretrained checkpoint")


def _mmengine_init(value, where):
    """``init_cfg`` made of mmengine's plain initialisers on layer classes (SSDLite's ``TruncNormal``
    / ``Normal`` on ``Conv2d``): applied as mmengine applies them; ``override`` is refused."""
    from .mobilenet import INIT_TYPES
    for e in value if isinstance(value, list) else [value]:
        if e is None or (isinstance(e, dict) and e.get("type") == "Pretrained"):
            continue
        layers = e.get("layer") if isinstance(e, dict) else None
        layers = [layers] if isinstance(layers, str) else (layers or [])
        if not isinstance(e, dict) or e.get("type") not in INIT_TYPES or "override" in e or not layers or \
                set(layers) - {"Conv2d", "BatchNorm2d", "_BatchNorm"}:
            raise ConfigBuildError(f"{where}={value!r} is not applied here (initialisers {list(INIT_TYPES)} on "
                                   f"layer Conv2d / BatchNorm2d, without override)")


def _bn_cfg(value, where):
    """BatchNorm whose eps and momentum act (SSDLite's parts), or none."""
    if value is not None and (not isinstance(value, dict) or value.get("type") not in _NORMS
                              or set(value) - {"type", "eps", "momentum", "requires_grad"}):
        raise ConfigBuildError(f"{where}={value!r} is not built here (None or dict(type='BN', eps=..., momentum=...))")


def _relu(value, where):
    if not isinstance(value, dict) or value.get("type") not in ("ReLU", "ReLU6") or set(value) - {"type", "inplace"}:
        raise ConfigBuildError(f"{where}={value!r} is not built here (dict(type='ReLU' or 'ReLU6'))")


def _default_init(value, where):
    if value is not None:
        raise ConfigBuildError(f"{where}={value!r} is not applied here: this part starts from mmdetection's "
                               f"default initialisation for it")


RESNET = {
    "depth": _value([18, 34, 50, 101, 152]), "in_channels": _value(3), "stem_channels": _value([None, 64]),
    "base_channels": _value(64), "num_stages": _value(4), "strides": _value([(1, 2, 2, 2)]),
    "dilations": _value([(1, 1, 1, 1)]), "out_indices": ACTS, "style": _value(["pytorch", "caffe"]),
    "deep_stem": _value(False), "avg_down": _value(False), "frozen_stages": ACTS, "conv_cfg": _value(None),
    "norm_cfg": _norm_cfg, "norm_eval": ACTS, "dcn": _value(None), "stage_with_dcn": _value([(False,) * 4]),
    "plugins": _value(None), "with_cp": _value(False), "zero_init_residual": ACTS, "init_cfg": _pretrained_only,
    "weights_path": ACTS,
}
RESNEXT = {**RESNET, "groups": ACTS, "base_width": ACTS, "depth": _value([50, 101, 152])}
FPN = {
    "in_channels": ACTS, "out_channels": ACTS, "num_outs": ACTS, "start_level": ACTS, "end_level": _value(-1),
    "add_extra_convs": _value([False, True, "on_input", "on_lateral", "on_output"]),
    "relu_before_extra_convs": ACTS, "no_norm_on_lateral": _anything, "conv_cfg": _value(None),
    "norm_cfg": _value(None), "act_cfg": _value(None), "upsample_cfg": _value([{"mode": "nearest"}]),
    "init_cfg": _default_init,
}
SSDVGG = {
    "depth": _value(16), "with_last_pool": _value(False), "ceil_mode": _value(True), "out_indices": _value([(3, 4)]),
    "out_feature_indices": _value([(22, 34)]), "init_cfg": _pretrained_only, "channels_last": ACTS,
}
SSDNECK = {
    "in_channels": ACTS, "out_channels": ACTS, "level_strides": ACTS, "level_paddings": ACTS,
    "l2_norm_scale": ACTS, "last_kernel_size": ACTS, "use_depthwise": ACTS, "conv_cfg": _value(None),
    "norm_cfg": _bn_cfg, "act_cfg": _relu, "init_cfg": _mmengine_init,
}
MOBILENET_V2 = {
    "widen_factor": ACTS, "out_indices": _value([(4, 7)], "SSDLite's two levels"), "frozen_stages": ACTS,
    "conv_cfg": _value(None), "norm_cfg": _norm_cfg, "act_cfg": _relu, "norm_eval": ACTS, "with_cp": _value(False),
    "init_cfg": _mmengine_init,
}
CSPNEXT = {
    "arch": _value(["P5", "P6"]), "deepen_factor": ACTS, "widen_factor": ACTS,
    "out_indices": _value([(2, 3, 4), (2, 3, 4, 5)]),
    "frozen_stages": _value(-1), "use_depthwise": _value(False), "expand_ratio": ACTS, "arch_ovewrite": _value(None),
    "spp_kernel_sizes": _value([(5, 9, 13)]), "channel_attention": ACTS, "conv_cfg": _value(None),
    "norm_cfg": _norm_cfg, "act_cfg": _act("SiLU"), "norm_eval": _value(False), "init_cfg": _pretrained_only,
}
CSPNEXT_PAFPN = {
    "in_channels": ACTS, "out_channels": ACTS, "num_csp_blocks": ACTS, "use_depthwise": _value(False),
    "expand_ratio": ACTS, "upsample_cfg": _value([{"scale_factor": 2, "mode": "nearest"}]),
    "conv_cfg": _value(None), "norm_cfg": _norm_cfg, "act_cfg": _act("SiLU"), "init_cfg": _default_init,
}
# head keys the head core reads (priors, coder, losses, targets); checked by detengine.builder
_CORE_KEYS = ("num_classes", "anchor_generator", "prior_generator", "bbox_coder", "loss_cls", "loss_bbox",
              "reg_decoded_bbox", "train_cfg", "test_cfg")
SSD_HEAD = {
    **dict.fromkeys(_CORE_KEYS, ACTS), "init_cfg": _mmengine_init,
    "in_channels": ACTS, "stacked_convs": _value(0), "feat_channels": _anything,
    "use_depthwise": ACTS, "conv_cfg": _value(None), "norm_cfg": _bn_cfg, "act_cfg": _relu,
}
RETINA_HEAD = {
    **dict.fromkeys(_CORE_KEYS, ACTS), "init_cfg": _default_init,
    "in_channels": ACTS, "stacked_convs": ACTS, "feat_channels": ACTS,
    "conv_cfg": _value(None), "norm_cfg": _value(None),
}
RTMDET_SEPBN_HEAD = {
    **dict.fromkeys(_CORE_KEYS, ACTS), "init_cfg": _default_init,
    "in_channels": ACTS, "stacked_convs": ACTS, "feat_channels": ACTS,
    "share_conv": ACTS, "pred_kernel_size": ACTS, "exp_on_reg": ACTS, "with_objectness": _value(False),
    "use_depthwise": _value(False), "norm_cfg": _norm_cfg, "act_cfg": _act("SiLU"), "conv_cfg": _value(None),
}


def _gn_cfg(value, where):
    """GroupNorm (FCOS's towers): ``num_groups`` and ``requires_grad`` act; or no norm."""
    if value is not None and (not isinstance(value, dict) or value.get("type") != "GN"
                              or set(value) - {"type", "num_groups", "requires_grad"}):
        raise ConfigBuildError(f"{where}={value!r} is not built here (None or dict(type='GN', num_groups=..., "
                               f"requires_grad=...))")


FCOS_HEAD = {  # AnchorFreeHead takes no prior generator (its points come from ``strides``)
    **dict.fromkeys(("num_classes", "bbox_coder", "loss_cls", "loss_bbox", "train_cfg", "test_cfg"), ACTS), "init_cfg": _default_init, "in_channels": ACTS, "stacked_convs": ACTS,
    "feat_channels": ACTS, "strides": ACTS, "regress_ranges": ACTS, "center_sampling": ACTS,
    "center_sample_radius": ACTS, "norm_on_bbox": ACTS, "centerness_on_reg": ACTS, "loss_centerness": ACTS,
    "conv_bias": _value(["auto", True, False]), "dcn_on_last_conv": _value(False, "deformable convs"),
    "conv_cfg": _value(None), "norm_cfg": _gn_cfg, "cls_predictor_cfg": _value(None, "NormedConv2d"),
}
ATSS_HEAD = {  # AnchorHead's keys (an anchor_generator, no prior_generator) and ATSSHead's own
    **dict.fromkeys(("num_classes", "anchor_generator", "bbox_coder", "loss_cls", "loss_bbox", "train_cfg",
                     "test_cfg", "in_channels", "feat_channels", "stacked_convs", "pred_kernel_size",
                     "loss_centerness"), ACTS),
    "reg_decoded_bbox": _value(True, "ATSSHead compares decoded boxes with its targets"),
    "init_cfg": _default_init, "conv_cfg": _value(None), "norm_cfg": _gn_cfg,
}
GFL_HEAD = {  # AnchorHead's keys and GFLHead's own (one anchor per cell: checked by the head core's builder)
    **dict.fromkeys(("num_classes", "anchor_generator", "bbox_coder", "loss_cls", "loss_bbox", "train_cfg",
                     "test_cfg", "in_channels", "feat_channels", "stacked_convs", "loss_dfl", "reg_max"), ACTS),
    "reg_decoded_bbox": _value([False, True], "GFLHead decodes its distances itself, whatever the flag says"),
    "init_cfg": _default_init, "conv_cfg": _value(None), "norm_cfg": _gn_cfg,
}
TOOD_HEAD = {  # ATSSHead's keys and TOODHead's own (num_dcn > 0 is refused by the head core's builder)
    **dict.fromkeys(("num_classes", "anchor_generator", "bbox_coder", "loss_cls", "loss_bbox", "train_cfg",
                     "test_cfg", "in_channels", "feat_channels", "stacked_convs", "initial_loss_cls", "num_dcn"), ACTS),
    "anchor_type": _value(["anchor_free", "anchor_based"]),
    "reg_decoded_bbox": _value(True, "TOODHead compares decoded boxes with its targets"),
    "init_cfg": _default_init, "conv_cfg": _value(None), "norm_cfg": _gn_cfg,
}
def _swish(value, where):
    """YOLOX's activation: ``Swish`` (``x * sigmoid(x)``) or its other name ``SiLU``."""
    if not isinstance(value, dict) or value.get("type") not in ("Swish", "SiLU") or set(value) - {"type", "inplace"}:
        raise ConfigBuildError(f"{where}={value!r} is not built here (dict(type='Swish') or dict(type='SiLU'))")


CSPDARKNET = {
    "arch": _value(["P5", "P6"]), "deepen_factor": ACTS, "widen_factor": ACTS, "out_indices": ACTS,
    "frozen_stages": ACTS, "use_depthwise": ACTS, "arch_ovewrite": _value(None), "spp_kernal_sizes": ACTS,
    "conv_cfg": _value(None), "norm_cfg": _norm_cfg, "act_cfg": _swish, "norm_eval": ACTS,
    "init_cfg": _pretrained_only,
}
YOLOX_PAFPN = {
    "in_channels": ACTS, "out_channels": ACTS, "num_csp_blocks": ACTS, "use_depthwise": ACTS,
    "upsample_cfg": _value([{"scale_factor": 2, "mode": "nearest"}]), "conv_cfg": _value(None),
    "norm_cfg": _norm_cfg, "act_cfg": _swish, "init_cfg": _default_init,
}
YOLOX_HEAD = {  # BaseDenseHead: no prior generator key (its points come from ``strides``)
    **dict.fromkeys(("num_classes", "in_channels", "feat_channels", "stacked_convs", "strides", "use_depthwise",
                     "loss_cls", "loss_bbox", "loss_obj", "loss_l1", "train_cfg", "test_cfg"), ACTS),
    "dcn_on_last_conv": _value(False, "deformable convs"), "conv_bias": _value(["auto", False]),
    "conv_cfg": _value(None), "norm_cfg": _norm_cfg, "act_cfg": _swish, "init_cfg": _default_init,
}
#: detector kind -> {part: {type: spec}}
PARTS = {
    "SSD": {"backbone": {"SSDVGG": SSDVGG, "MobileNetV2": MOBILENET_V2}, "neck": {"SSDNeck": SSDNECK},
            "bbox_head": {"SSDHead": SSD_HEAD}},
    "RetinaNet": {"backbone": {"ResNet": RESNET, "ResNeXt": RESNEXT}, "neck": {"FPN": FPN},
                  "bbox_head": {"RetinaHead": RETINA_HEAD}},
    "RTMDet": {"backbone": {"CSPNeXt": CSPNEXT}, "neck": {"CSPNeXtPAFPN": CSPNEXT_PAFPN},
               "bbox_head": {"RTMDetSepBNHead": RTMDET_SEPBN_HEAD}},
    "FCOS": {"backbone": {"ResNet": RESNET, "ResNeXt": RESNEXT}, "neck": {"FPN": FPN},
             "bbox_head": {"FCOSHead": FCOS_HEAD}},
    "ATSS": {"backbone": {"ResNet": RESNET, "ResNeXt": RESNEXT}, "neck": {"FPN": FPN},
             "bbox_head": {"ATSSHead": ATSS_HEAD}},
    "GFL": {"backbone": {"ResNet": RESNET, "ResNeXt": RESNEXT}, "neck": {"FPN": FPN},
            "bbox_head": {"GFLHead": GFL_HEAD}},
    "TOOD": {"backbone": {"ResNet": RESNET, "ResNeXt": RESNEXT}, "neck": {"FPN": FPN},
             "bbox_head": {"TOODHead": TOOD_HEAD}},
    "YOLOX": {"backbone": {"CSPDarknet": CSPDARKNET}, "neck": {"YOLOXPAFPN": YOLOX_PAFPN},
              "bbox_head": {"YOLOXHead": YOLOX_HEAD}},
}
_MODEL_KEYS = ("type", "data_preprocessor", "backbone", "neck", "bbox_head", "train_cfg", "test_cfg", "init_cfg")
#: batch augments the trainer applies (detengine.train.batch_augments), with the keys each takes
_BATCH_AUGMENTS = {"BatchSyncRandomResize": {"random_size_range", "interval", "size_divisor"}}


def _batch_augments(value, where):
    """``None``, ``[]``, or ``BatchSyncRandomResize`` entries (YOLOX's multi-scale training, applied
    by the trainer to training batches); any other batch augment is refused, not skipped."""
    for i, aug in enumerate(value or []):
        kind = aug.get("type") if isinstance(aug, dict) else None
        if kind not in _BATCH_AUGMENTS:
            raise ConfigBuildError(f"{where}={value!r} is not built here: batch augmentations other than "
                                   f"{sorted(_BATCH_AUGMENTS)} (BatchFixedSizePad ...) are not applied here")
        extra = set(aug) - {"type"} - _BATCH_AUGMENTS[kind]
        if extra or "random_size_range" not in aug:
            raise ConfigBuildError(f"{where}[{i}]={aug!r}: {kind} here takes random_size_range (required), interval "
                                   f"and size_divisor" + (f", not {sorted(extra)}" if extra else ""))


#: DetDataPreprocessor: normalisation and padding act (the pipeline's last steps, collate)
DATA_PREPROCESSOR = {
    "mean": ACTS, "std": ACTS, "bgr_to_rgb": ACTS, "pad_size_divisor": ACTS, "pad_value": _value(0),
    "rgb_to_bgr": _value(False), "pad_mask": _anything, "mask_pad_value": _anything, "pad_seg": _anything,
    "seg_pad_value": _anything, "boxtype2tensor": _anything, "non_blocking": _anything,
    "batch_augments": _batch_augments,
}
# SingleStageDetector (the type mmdetection's own SSD files use) is the detector its head makes
_KIND_OF_HEAD = {"SSDHead": "SSD", "RetinaHead": "RetinaNet", "AnchorHead": "RetinaNet",
                 "RTMDetSepBNHead": "RTMDet", "RTMDetHead": "RTMDet", "FCOSHead": "FCOS",
                 "ATSSHead": "ATSS", "GFLHead": "GFL", "TOODHead": "TOOD", "YOLOXHead": "YOLOX"}


def detector_kind(model: dict) -> str:
    """``model.type``, with ``SingleStageDetector`` named after its head (SSDHead -> SSD ...)."""
    kind = model.get("type")
    if kind == "SingleStageDetector":
        head = (model.get("bbox_head") or {}).get("type")
        if head not in _KIND_OF_HEAD:
            raise ConfigBuildError(f"model.type='SingleStageDetector' with bbox_head.type={head!r} is not built here; "
                                   f"known heads: {sorted(_KIND_OF_HEAD)}")
        return _KIND_OF_HEAD[head]
    return kind


def check_model(model: dict) -> None:
    """Refuse (``ConfigBuildError`` naming the key and why) any part of ``model`` that the
    network built here would not follow exactly."""
    kind = detector_kind(model)
    if kind not in PARTS:
        return                                   # TinySSD: DetScope's own layout, checked by its builder
    for key in model:
        if key not in _MODEL_KEYS:
            raise ConfigBuildError(f"model.{key} is not a part DetScope builds (it builds {list(_MODEL_KEYS)})")
    for part, specs in PARTS[kind].items():
        cfg = model.get(part)
        if isinstance(cfg, (list, tuple)):
            kinds = [c.get("type") if isinstance(c, dict) else c for c in cfg]
            raise ConfigBuildError(f"model.{part} is a chain {kinds}: chained parts are not built here")
        if not isinstance(cfg, dict):
            raise ConfigBuildError(f"model.{part} is missing: {kind} needs one of {sorted(specs)}")
        kind_of_part = cfg.get("type")
        if kind_of_part in REFUSED_TYPES:
            raise ConfigBuildError(f"model.{part}.type={kind_of_part!r}: {REFUSED_TYPES[kind_of_part]}")
        if kind_of_part not in specs:
            raise ConfigBuildError(f"model.{part}.type={kind_of_part!r} is not built here for {kind}; "
                                   f"it builds {sorted(specs)}")
        _check_keys(cfg, specs[kind_of_part], f"model.{part}", kind_of_part)
    pre = model.get("data_preprocessor")
    if pre is not None:
        if pre.get("type", "DetDataPreprocessor") != "DetDataPreprocessor":
            raise ConfigBuildError(f"model.data_preprocessor.type={pre.get('type')!r} is not built here "
                                   f"(DetDataPreprocessor)")
        _check_keys(pre, DATA_PREPROCESSOR, "model.data_preprocessor", "DetDataPreprocessor")
    _default_init(model.get("init_cfg"), "model.init_cfg")


def _check_keys(cfg: dict, spec: dict, where: str, kind: str) -> None:
    for key, value in cfg.items():
        if key == "type":
            continue
        rule = spec.get(key)
        if rule is None:
            raise ConfigBuildError(f"{where}.{key}: {kind} here takes no argument {key!r} (it takes {sorted(spec)})")
        if rule is not ACTS:
            rule(value, f"{where}.{key}")
