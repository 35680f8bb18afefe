"""Config dicts (mmdetection 3.x layout) -> engine objects. The name -> class tables live here.

Arguments that mmdetection configs carry but the engine does not model (``init_cfg``,
``iou_calculator``, ``debug`` ...) are accepted where they are harmless and listed in
``IGNORED_KEYS``; anything else unknown is an error that names the key and the component.
"""
from __future__ import annotations

import copy
import inspect as _inspect

from . import assigners, coders, dense_losses, losses, priors
from .heads import (
    AnchorHeadCore,
    HeadCore,
    RTMDetHeadCore,
    SSDHeadCore,
    SSDMobileNetV2Rule,
    SSDVGGRule,
    StrideRule,
    TinySSDHeadCore,
)
from .heads.atss import ATSSHeadCore
from .heads.fcos import FCOSHeadCore
from .heads.gfl import GFLHeadCore
from .heads.tood import TOODHeadCore
from .heads.yolox import YOLOXHeadCore
from .samplers import PseudoSampler

__all__ = ["build", "build_head_core", "ConfigBuildError", "REGISTRY", "HEAD_TYPES", "default_input_shape"]


class ConfigBuildError(ValueError):
    """A config names an unknown type or argument."""


REGISTRY = {
    "prior_generator": {c.__name__: c for c in (
        priors.AnchorGenerator, priors.LegacyAnchorGenerator, priors.SSDAnchorGenerator,
        priors.LegacySSDAnchorGenerator, priors.MlvlPointGenerator, priors.D2LPriorGenerator)},
    "assigner": {c.__name__: c for c in (
        assigners.MaxIoUAssigner, assigners.ATSSAssigner, assigners.DynamicSoftLabelAssigner,
        assigners.SSDPytorchMatcher, assigners.D2LGreedyAssigner, assigners.FCOSAssigner,
        assigners.TaskAlignedAssigner, assigners.SimOTAAssigner)},
    "sampler": {"PseudoSampler": PseudoSampler},
    "bbox_coder": {c.__name__: c for c in (
        coders.DeltaXYWHBBoxCoder, coders.LegacyDeltaXYWHBBoxCoder, coders.DistancePointBBoxCoder, coders.D2LOffsetCoder)},
    "loss": {c.__name__: c for c in (
        dense_losses.CrossEntropyLoss, losses.SmoothL1Loss, losses.L1Loss, dense_losses.FocalLoss,
        losses.QualityFocalLoss, losses.GIoULoss, dense_losses.IoULoss, dense_losses.DistributionFocalLoss)},
}

# Head type -> (core class, score layout). RTMDetSepBNHead and RTMDetHead share the logic.
HEAD_TYPES = {
    "SSDHead": SSDHeadCore,
    "RetinaHead": AnchorHeadCore,
    "AnchorHead": AnchorHeadCore,
    "RTMDetHead": RTMDetHeadCore,
    "RTMDetSepBNHead": RTMDetHeadCore,
    "TinySSDHead": TinySSDHeadCore,
    "FCOSHead": FCOSHeadCore,
    "ATSSHead": ATSSHeadCore,
    "GFLHead": GFLHeadCore,
    "TOODHead": TOODHeadCore,
    "YOLOXHead": YOLOXHeadCore,
}

IGNORED_KEYS = {"iou_calculator", "init_cfg", "debug", "gpu_assign_thr", "avg_non_ignore",
                "use_mask", "reduction_override", "type"}
_LOSS_SETTINGS = {"loss_weight", "reduction"}


def build(cfg: dict, kind: str, **defaults):
    """Build one component of ``kind`` (a key of REGISTRY) from ``dict(type=..., **kwargs)``."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ConfigBuildError(f"{kind} config must be a dict with a 'type', got {cfg!r}")
    table = REGISTRY[kind]
    name = cfg["type"]
    if name not in table:
        raise ConfigBuildError(f"unknown {kind} type {name!r}; known: {sorted(table)}")
    cls = table[name]
    kwargs = {**defaults, **{k: copy.deepcopy(v) for k, v in cfg.items() if k != "type"}}
    return cls(**_accepted_kwargs(cls, kwargs, f"{kind} {name}"))


def _accepted_kwargs(cls, kwargs: dict, what: str) -> dict:
    params = _signature_params(cls)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    out = {}
    for key, value in kwargs.items():
        if key in params or (takes_any and key in _LOSS_SETTINGS | set(_base_params(cls))):
            out[key] = value
        elif key in IGNORED_KEYS:
            continue
        else:
            known = sorted(k for k, p in params.items() if p.kind == p.KEYWORD_ONLY)
            raise ConfigBuildError(f"{what} got an unknown argument {key!r}; it takes {known}")
    return out


def _signature_params(cls) -> dict:
    return dict(_inspect.signature(cls.__init__).parameters)


def _base_params(cls) -> list[str]:
    names = []
    for base in cls.__mro__[1:]:
        if "__init__" in base.__dict__:
            names += [k for k, p in _inspect.signature(base.__init__).parameters.items()
                      if p.kind == p.KEYWORD_ONLY]
    return names


def _featmap_rule(model: dict, head: dict):
    model_type = model.get("type", "")
    gen = head.get("anchor_generator") or head.get("prior_generator") or {}
    if head["type"] == "SSDHead":
        neck = model.get("neck") or {}
        backbone = model.get("backbone") or {}
        rule = {"SSDVGG": SSDVGGRule, "MobileNetV2": SSDMobileNetV2Rule}.get(backbone.get("type", "SSDVGG"))
        if rule is None or (rule is SSDMobileNetV2Rule and tuple(backbone.get("out_indices", ())) != (4, 7)):
            raise ConfigBuildError(f"SSDHead on backbone {backbone.get('type')!r} "
                                   f"(out_indices {backbone.get('out_indices')}): its feature-map sizes are "
                                   f"known here for SSDVGG and MobileNetV2 with out_indices=(4, 7) only")
        return rule(neck.get("level_strides", (2, 2, 1, 1)), neck.get("level_paddings", (1, 1, 0, 0)),
                    neck.get("last_kernel_size", 3))
    if head["type"] == "TinySSDHead" or model_type == "TinySSD":
        from .heads import TinySSDRule
        return TinySSDRule()
    if "strides" not in gen:
        raise ConfigBuildError(f"cannot infer feature-map sizes of model {model_type!r}: no strides")
    return StrideRule(gen["strides"])


def build_head_core(model: dict) -> HeadCore:
    """The head core of ``model`` (the config's ``model`` dict, with ``bbox_head``,
    ``train_cfg`` and ``test_cfg``)."""
    head = copy.deepcopy(model.get("bbox_head"))
    if not head:
        raise ConfigBuildError(f"model.type={model.get('type')!r} has no bbox_head: DetScope traces dense "
                               f"single-stage detectors (heads {sorted(HEAD_TYPES)})")
    if head.get("type") not in HEAD_TYPES:
        raise ConfigBuildError(f"model.bbox_head.type must be one of {sorted(HEAD_TYPES)}, got {head.get('type')!r}")
    train_cfg = copy.deepcopy(model.get("train_cfg") or {})
    test_cfg = copy.deepcopy(model.get("test_cfg") or {})
    core_cls = HEAD_TYPES[head["type"]]
    if core_cls is FCOSHeadCore:
        return _fcos_core(head, train_cfg, test_cfg)
    if core_cls is YOLOXHeadCore:
        return _yolox_core(head, train_cfg, test_cfg)
    gen_cfg = head.get("anchor_generator") or head.get("prior_generator")
    if gen_cfg is None:
        raise ConfigBuildError(f"{head['type']} needs an anchor_generator / prior_generator")
    kwargs = dict(
        num_classes=head["num_classes"],
        prior_generator=build(gen_cfg, "prior_generator"),
        featmap_rule=_featmap_rule(model, head),
        bbox_coder=build(head.get("bbox_coder", _default_bbox_coder(head["type"])), "bbox_coder"),
        assigner=build(train_cfg.get("assigner", _default_assigner(head["type"])), "assigner"),
        sampler=build(train_cfg.get("sampler", {"type": "PseudoSampler"}), "sampler"),
        loss_cls=build(head.get("loss_cls", _default_loss_cls(head["type"])), "loss"),
        loss_bbox=build(head.get("loss_bbox", _default_loss_bbox(head["type"], train_cfg)), "loss"),
        allowed_border=train_cfg.get("allowed_border", -1),
        pos_weight=train_cfg.get("pos_weight", -1),
        reg_decoded_bbox=head.get("reg_decoded_bbox", head["type"].startswith("RTMDet") or core_cls is ATSSHeadCore),
        test_cfg=test_cfg, train_cfg=train_cfg,
    )
    if core_cls is SSDHeadCore:
        kwargs.update(neg_pos_ratio=train_cfg.get("neg_pos_ratio", 3),
                      smoothl1_beta=train_cfg.get("smoothl1_beta", 1.0),
                      mining=train_cfg.get("hard_negative_mining", "mmdet"))
    if core_cls is TinySSDHeadCore:
        kwargs["neg_pos_ratio"] = train_cfg.get("neg_pos_ratio")
    if core_cls is ATSSHeadCore:
        kwargs["loss_centerness"] = build(head.get("loss_centerness", _DEFAULT_LOSS_CENTERNESS), "loss")
    if core_cls is TOODHeadCore:
        kwargs.update(_tood_kwargs(head, train_cfg, kwargs))
    if core_cls is GFLHeadCore:
        _check_gfl(head, kwargs)
        kwargs.update(loss_dfl=build(head.get("loss_dfl", _DEFAULT_LOSS_DFL), "loss"), reg_max=head.get("reg_max", 16))
    core = core_cls(**kwargs)
    core.exp_on_reg = bool(head.get("exp_on_reg", False))
    return core


_DEFAULT_LOSS_CENTERNESS = {"type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0}
_DEFAULT_LOSS_DFL = {"type": "DistributionFocalLoss", "loss_weight": 0.25}


_DEFAULT_TOOD_INITIAL_LOSS = {"type": "FocalLoss", "use_sigmoid": True, "activated": True, "gamma": 2.0,
                              "alpha": 0.25, "loss_weight": 1.0}


def _tood_kwargs(head: dict, train_cfg: dict, kwargs: dict) -> dict:
    """TOODHead: the initial stage (``initial_epoch``, ``initial_assigner``, ``initial_loss_cls``)
    and ``train_cfg.alpha`` / ``beta``, which mmdetection hands to the task-aligned assigner."""
    if head.get("num_dcn", 0):
        raise ConfigBuildError(f"model.bbox_head.num_dcn={head['num_dcn']}: deformable convs are not built here")
    if set(kwargs["prior_generator"].num_base_priors) != {1}:
        raise ConfigBuildError(f"TOODHead: one anchor per cell, got {kwargs['prior_generator'].num_base_priors}")
    alpha, beta = train_cfg.get("alpha", 1), train_cfg.get("beta", 6)
    assigner = kwargs["assigner"]
    if isinstance(assigner, assigners.TaskAlignedAssigner):
        given = train_cfg.get("assigner", {})
        assigner.alpha, assigner.beta = given.get("alpha", alpha), given.get("beta", beta)
    return dict(initial_epoch=train_cfg.get("initial_epoch", 4), alpha=alpha, beta=beta,
                initial_assigner=build(train_cfg.get("initial_assigner", {"type": "ATSSAssigner", "topk": 9}),
                                       "assigner"),
                initial_loss_cls=build(head.get("initial_loss_cls", _DEFAULT_TOOD_INITIAL_LOSS), "loss"))


def _check_gfl(head: dict, kwargs: dict) -> None:
    """GFLHead: one anchor per cell (it regresses distances from the anchor's centre), square
    strides, QFL (it is called with the IoU targets), the distance coder."""
    nb = kwargs["prior_generator"].num_base_priors
    if set(nb) != {1}:
        raise ConfigBuildError(f"GFLHead is anchor-free: one anchor per cell, got {nb} (ratios / scales)")
    if any(sw != sh for sw, sh in kwargs["prior_generator"].strides):
        raise ConfigBuildError(f"GFLHead needs square strides, got {kwargs['prior_generator'].strides}")
    if not isinstance(kwargs["loss_cls"], losses.QualityFocalLoss):
        raise ConfigBuildError(f"model.bbox_head.loss_cls={head.get('loss_cls')!r}: GFLHead trains its class "
                               f"scores with QualityFocalLoss against the IoU")
    if not isinstance(kwargs["bbox_coder"], coders.DistancePointBBoxCoder):
        raise ConfigBuildError(f"model.bbox_head.bbox_coder={head.get('bbox_coder')!r}: GFLHead regresses "
                               f"distances (DistancePointBBoxCoder)")


def _fcos_core(head: dict, train_cfg: dict, test_cfg: dict) -> FCOSHeadCore:
    """FCOSHead: points at ``(i + 0.5) * stride`` of the head's ``strides`` (its own
    MlvlPointGenerator), the point rule from the head's keys. mmdetection's FCOS reads no
    ``train_cfg``; a ``train_cfg.assigner`` of type ``FCOSAssigner`` (DetScope's name for that rule)
    overrides them, any other assigner is not FCOS's and is left aside, as there."""
    strides = list(head.get("strides", (4, 8, 16, 32, 64)))
    rule = {"type": "FCOSAssigner", "regress_ranges": head.get("regress_ranges", assigners.fcos.DEFAULT_REGRESS_RANGES),
            "center_sampling": head.get("center_sampling", False),
            "center_sample_radius": head.get("center_sample_radius", 1.5)}
    given = train_cfg.get("assigner") or {}
    if given.get("type") == "FCOSAssigner":
        rule.update({k: v for k, v in given.items() if k != "_delete_"})
    return FCOSHeadCore(
        num_classes=head["num_classes"], prior_generator=priors.MlvlPointGenerator(strides=strides, offset=0.5),
        featmap_rule=StrideRule(strides), assigner=build(rule, "assigner"),
        bbox_coder=build(head.get("bbox_coder", {"type": "DistancePointBBoxCoder"}), "bbox_coder"),
        loss_cls=build(head.get("loss_cls", _default_loss_cls("FCOSHead")), "loss"),
        loss_bbox=build(head.get("loss_bbox", {"type": "IoULoss", "loss_weight": 1.0}), "loss"),
        loss_centerness=build(head.get("loss_centerness", _DEFAULT_LOSS_CENTERNESS), "loss"),
        norm_on_bbox=head.get("norm_on_bbox", False), test_cfg=test_cfg, train_cfg=train_cfg)


_YOLOX_LOSSES = {  # YOLOXHead's defaults, and the loss types its loss_by_feat can take
    "loss_cls": ({"type": "CrossEntropyLoss", "use_sigmoid": True, "reduction": "sum", "loss_weight": 1.0},
                 (dense_losses.CrossEntropyLoss,)),
    "loss_bbox": ({"type": "IoULoss", "mode": "square", "eps": 1e-16, "reduction": "sum", "loss_weight": 5.0},
                  (dense_losses.IoULoss, losses.GIoULoss)),
    "loss_obj": ({"type": "CrossEntropyLoss", "use_sigmoid": True, "reduction": "sum", "loss_weight": 1.0},
                 (dense_losses.CrossEntropyLoss,)),
    "loss_l1": ({"type": "L1Loss", "reduction": "sum", "loss_weight": 1.0}, (losses.L1Loss, losses.SmoothL1Loss)),
}


def _yolox_core(head: dict, train_cfg: dict, test_cfg: dict) -> YOLOXHeadCore:
    """YOLOXHead: its own ``MlvlPointGenerator(strides, offset=0)``, SimOTA (``train_cfg.assigner``;
    mmdetection builds none without a ``train_cfg``, the debug views then use SimOTA's defaults),
    four losses each summed (``reduction='sum'``) and divided by the batch's positives. A loss of
    another kind or reduction is refused: ``loss_by_feat`` would compute another number."""
    strides = list(head.get("strides", (8, 16, 32)))
    built = {}
    for key, (default, kinds) in _YOLOX_LOSSES.items():
        cfg = head.get(key, default)
        loss = build(cfg, "loss")
        if not isinstance(loss, kinds) or getattr(loss, "reduction", "sum") != "sum" or \
                (isinstance(loss, dense_losses.CrossEntropyLoss) and not loss.use_sigmoid):
            raise ConfigBuildError(f"model.bbox_head.{key}={cfg!r} is not built here: YOLOXHead's {key} is "
                                   f"{default['type']} (or {' / '.join(k.__name__ for k in kinds[1:]) or 'nothing else'})"
                                   f"{' with use_sigmoid=True' if 'use_sigmoid' in default else ''} and "
                                   f"reduction='sum'")
        built[key] = loss
    return YOLOXHeadCore(
        num_classes=head["num_classes"], prior_generator=priors.MlvlPointGenerator(strides=strides, offset=0),
        featmap_rule=StrideRule(strides),
        assigner=build(train_cfg.get("assigner", {"type": "SimOTAAssigner", "center_radius": 2.5}), "assigner"),
        sampler=build(train_cfg.get("sampler", {"type": "PseudoSampler"}), "sampler"),
        test_cfg=test_cfg, train_cfg=train_cfg, **built)


def _default_assigner(head_type: str) -> dict:
    if head_type == "TOODHead":
        return {"type": "TaskAlignedAssigner", "topk": 13}
    if head_type == "GFLHead":
        return {"type": "ATSSAssigner", "topk": 9}
    if head_type.startswith("RTMDet"):
        return {"type": "DynamicSoftLabelAssigner", "topk": 13}
    if head_type == "TinySSDHead":
        return {"type": "D2LGreedyAssigner", "iou_threshold": 0.5}
    return {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0.0}


def _default_bbox_coder(head_type: str) -> dict:
    return {"type": "DistancePointBBoxCoder"} if head_type == "GFLHead" else {"type": "DeltaXYWHBBoxCoder"}


def _default_loss_cls(head_type: str) -> dict:
    if head_type in ("SSDHead", "TinySSDHead"):
        return {"type": "CrossEntropyLoss", "loss_weight": 1.0}
    if head_type.startswith("RTMDet") or head_type == "GFLHead":
        return {"type": "QualityFocalLoss", "use_sigmoid": True, "beta": 2.0, "loss_weight": 1.0}
    if head_type == "TOODHead":
        return {"type": "QualityFocalLoss", "use_sigmoid": True, "activated": True, "beta": 2.0, "loss_weight": 1.0}
    return {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0}


def _default_loss_bbox(head_type: str, train_cfg: dict) -> dict:
    if head_type == "SSDHead":
        return {"type": "SmoothL1Loss", "beta": train_cfg.get("smoothl1_beta", 1.0), "loss_weight": 1.0}
    if head_type == "TinySSDHead":
        return {"type": "L1Loss", "loss_weight": 1.0}
    if head_type.startswith("RTMDet") or head_type in ("GFLHead", "TOODHead"):
        return {"type": "GIoULoss", "loss_weight": 2.0}
    return {"type": "L1Loss", "loss_weight": 1.0}


def default_input_shape(model: dict) -> tuple[int, int]:
    """A sensible network input (h, w) for a model when the user gives none."""
    head = model.get("bbox_head") or {}
    gen = head.get("anchor_generator") or head.get("prior_generator") or {}
    if "input_size" in gen:
        return (int(gen["input_size"]), int(gen["input_size"]))
    if "image_size" in gen:
        return tuple(int(v) for v in gen["image_size"])
    return (640, 640)
