"""An mmdetection config's training parts as :class:`~detengine.train.trainer.TrainSettings`.

Read: ``train_dataloader`` (batch size, workers), ``optim_wrapper`` (SGD / AdamW and their
arguments, ``clip_grad``, ``paramwise_cfg``, ``dtype``), ``param_scheduler`` (``LinearLR``,
``MultiStepLR``, ``CosineAnnealingLR``, ``ConstantLR``, chained exactly as mmengine chains them:
:mod:`detengine.train.schedule`), ``train_cfg``
(``EpochBasedTrainLoop``: ``max_epochs``, ``val_interval``, ``val_begin``,
``dynamic_intervals``), ``default_hooks.checkpoint``, ``custom_hooks`` (``EMAHook``; the data
side handles ``PipelineSwitchHook``), ``auto_scale_lr`` and ``randomness.seed``.

What a config asks for and the trainer cannot do either raises ``ValueError`` saying so (when
training would otherwise differ in substance) or is listed by :func:`config_warnings` (shown at
the start of a run), never dropped silently.
"""
from __future__ import annotations

import inspect

import torch

from .data import HANDLED_HOOKS
from .ema import EMA_TYPES
from .optim import PARAMWISE_KEYS
from .trainer import TrainSettings

__all__ = ["settings_from_config", "config_warnings", "uses_syncbn"]

_OPTIMIZERS = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW}
_OPTIM_WRAPPER_KEYS = ("type", "optimizer", "paramwise_cfg", "clip_grad", "loss_scale", "dtype")
_EMA_ARGS = ("ema_type", "momentum", "gamma", "interval", "update_buffers", "begin_iter", "begin_epoch",
             "strict_load", "priority")
_SCHEDULER_KEYS = {
    "LinearLR": ("start_factor", "end_factor", "begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
    "MultiStepLR": ("milestones", "gamma", "begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
    "CosineAnnealingLR": ("T_max", "eta_min", "eta_min_ratio", "begin", "end", "by_epoch", "convert_to_iter_based",
                          "verbose"),
    "ConstantLR": ("factor", "begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
}
_LOOP_KEYS = ("type", "max_epochs", "val_interval", "val_begin", "dynamic_intervals")


def _scheduler(sch: dict) -> dict:
    """A ``param_scheduler`` entry, checked: a known type with arguments mmengine accepts."""
    kind = sch.get("type")
    if kind not in _SCHEDULER_KEYS:
        raise ValueError(f"param_scheduler type {kind!r} is not supported; use one of {list(_SCHEDULER_KEYS)}")
    unknown = sorted(set(sch) - {"type"} - set(_SCHEDULER_KEYS[kind]))
    if unknown:
        raise ValueError(f"param_scheduler {kind}: unknown arguments {unknown}")
    if sch.get("convert_to_iter_based") and not sch.get("by_epoch", True):
        raise ValueError(f"param_scheduler {kind}: convert_to_iter_based needs by_epoch=True")
    if kind == "CosineAnnealingLR" and sch.get("eta_min") is not None and sch.get("eta_min_ratio") is not None:
        raise ValueError("param_scheduler CosineAnnealingLR: give eta_min or eta_min_ratio, not both")
    for key in ("start_factor", "end_factor", "factor"):
        if key in sch and not 0 <= sch[key] <= 1:
            raise ValueError(f"param_scheduler {kind}: {key} must be in [0, 1], got {sch[key]}")
    if sch.get("end") is not None and sch["end"] <= sch.get("begin", 0):
        raise ValueError(f"param_scheduler {kind}: end must be larger than begin")
    return {k: v for k, v in sch.items() if k != "verbose"}


def _optimizer(optim: dict, s: dict) -> None:
    opt = dict(optim.get("optimizer") or {})
    opt.pop("_delete_", None)
    kind = opt.pop("type", "SGD")
    if kind not in _OPTIMIZERS:
        raise ValueError(f"optim_wrapper.optimizer type must be one of {list(_OPTIMIZERS)}, got {kind!r}")
    s["optimizer"] = kind
    accepted = set(inspect.signature(_OPTIMIZERS[kind]).parameters) - {"params"}
    # no weight_decay in the config: the optimizer's own default (SGD 0, AdamW 0.01), as mmengine
    s["weight_decay"] = inspect.signature(_OPTIMIZERS[kind]).parameters["weight_decay"].default
    extra = {}
    for key, value in opt.items():
        if key not in accepted:
            raise ValueError(f"optim_wrapper.optimizer: {kind} has no argument {key!r}")
        if key in ("lr", "momentum", "weight_decay"):
            s[key] = value
        elif key == "fused":
            if value and kind != "AdamW":
                raise ValueError(f"fused=True is supported for AdamW only, not {kind!r}")
            s["fused"] = bool(value)
        else:
            extra[key] = tuple(value) if isinstance(value, list) else value
    s["optimizer_args"] = extra
    clip = dict(optim.get("clip_grad") or {})
    if clip:
        if clip.pop("type", "norm") != "norm":
            raise ValueError("optim_wrapper.clip_grad: only norm clipping (type='norm') is supported")
        s["grad_clip"] = clip.pop("max_norm", None)
        s["grad_clip_norm_type"] = float(clip.pop("norm_type", 2.0))
        if clip:
            raise ValueError(f"optim_wrapper.clip_grad: unknown arguments {sorted(clip)}")
    paramwise = optim.get("paramwise_cfg")
    if paramwise:
        unknown = sorted(set(paramwise) - set(PARAMWISE_KEYS))
        if unknown:
            raise ValueError(f"optim_wrapper.paramwise_cfg has unknown keys {unknown}; known: {list(PARAMWISE_KEYS)}")
        s["paramwise"] = dict(paramwise)
    if "dtype" in optim:
        if optim["dtype"] not in ("float16", "bfloat16"):
            raise ValueError(f"optim_wrapper.dtype must be 'float16' or 'bfloat16', got {optim['dtype']!r}")
        s["amp_dtype"] = optim["dtype"]


def _ema_hook(cfg: dict) -> dict | None:
    """The ``EMAHook`` of ``custom_hooks`` as :class:`~detengine.train.ema.ModelEMA` arguments."""
    hooks = [h for h in cfg.get("custom_hooks") or [] if isinstance(h, dict) and h.get("type") == "EMAHook"]
    if not hooks:
        return None
    if len(hooks) > 1:
        raise ValueError("custom_hooks: more than one EMAHook")
    args = {k: v for k, v in hooks[0].items() if k not in ("type", "priority")}
    unknown = sorted(set(args) - set(_EMA_ARGS))
    if unknown:
        raise ValueError(f"custom_hooks EMAHook: unknown arguments {unknown}; known: {list(_EMA_ARGS)}")
    ema_type = args.get("ema_type", "ExponentialMovingAverage")
    if ema_type not in EMA_TYPES:
        raise ValueError(f"custom_hooks EMAHook: ema_type must be one of {list(EMA_TYPES)}, got {ema_type!r}")
    if ema_type == "ExponentialMovingAverage" and "gamma" in args:
        raise ValueError("custom_hooks EMAHook: ExponentialMovingAverage takes no gamma")
    if min(args.get("begin_iter", 0), args.get("begin_epoch", 0)) < 0:
        raise ValueError("custom_hooks EMAHook: begin_iter / begin_epoch must be >= 0")
    return args


def _loop(cfg: dict, s: dict) -> None:
    loop = dict(cfg.get("train_cfg") or {})
    if loop.get("type", "EpochBasedTrainLoop") != "EpochBasedTrainLoop":
        raise ValueError(f"train_cfg type {loop['type']!r} is not supported; use EpochBasedTrainLoop "
                         f"(max_epochs, val_interval)")
    unknown = sorted(set(loop) - set(_LOOP_KEYS))
    if unknown:
        raise ValueError(f"train_cfg: unknown keys {unknown}")
    s["max_epochs"] = int(loop.get("max_epochs", 12))
    s["eval_interval"] = int(loop.get("val_interval", 1))
    s["eval_begin"] = int(loop.get("val_begin", 1))
    s["dynamic_intervals"] = tuple((int(e), int(i)) for e, i in loop.get("dynamic_intervals") or ())


def settings_from_config(cfg: dict, **overrides) -> TrainSettings:
    """The config's training settings (see the module doc); non-None ``overrides`` win."""
    s: dict = {}
    loader = cfg.get("train_dataloader", {})
    s["batch_size"] = loader.get("batch_size", 8)
    s["num_workers"] = loader.get("num_workers", 0)
    _optimizer(cfg.get("optim_wrapper") or {}, s)
    s["schedulers"] = tuple(_scheduler(dict(sch)) for sch in cfg.get("param_scheduler") or [])
    _loop(cfg, s)
    ema = _ema_hook(cfg)
    if ema is not None:
        s["ema"] = ema
    s["checkpoint_interval"] = (cfg.get("default_hooks") or {}).get("checkpoint", {}).get("interval", 1)
    scale = cfg.get("auto_scale_lr") or {}
    if scale.get("enable"):
        s["auto_scale_base_batch"] = int(scale.get("base_batch_size", 16))
    s["seed"] = (cfg.get("randomness") or {}).get("seed", 0) or 0
    s.update({k: v for k, v in overrides.items() if v is not None})
    return TrainSettings(**s)


def uses_syncbn(node) -> bool:
    """Whether a (model) config asks for ``SyncBN`` anywhere."""
    if isinstance(node, dict):
        return node.get("type") == "SyncBN" or any(uses_syncbn(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(uses_syncbn(v) for v in node)
    return False


def config_warnings(cfg: dict, *, distributed: bool = False, cuda: bool = False) -> list[str]:
    """Parts of an mmdetection config that training here does not act on, one sentence each
    (shown at the start of a run; nothing is ignored silently)."""
    out = []
    for hook in cfg.get("custom_hooks") or []:
        kind = hook.get("type") if isinstance(hook, dict) else hook
        if kind != "EMAHook" and kind not in HANDLED_HOOKS:
            out.append(f"custom_hooks: {kind!r} is not supported here and is ignored")
    optim = cfg.get("optim_wrapper") or {}
    for key in sorted(set(optim) - set(_OPTIM_WRAPPER_KEYS)):
        out.append(f"optim_wrapper.{key} is not supported here and is ignored")
    if optim.get("type") == "AmpOptimWrapper" and not cuda:
        out.append("optim_wrapper AmpOptimWrapper: mixed precision is used on CUDA only; this CPU run uses float32")
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if isinstance(cfg.get(key), dict) and cfg[key].get("dataset"):
            out.append(f"{key}.dataset is not read: the data come from --data (default: the config's data.default, "
                       f"else the built-in synthetic set)")
    for key in ("val_evaluator", "test_evaluator"):
        metric = (cfg.get(key) or {}).get("metric") if isinstance(cfg.get(key), dict) else None
        if metric not in (None, "bbox"):
            out.append(f"{key}.metric={metric!r}: evaluation is COCO bbox AP here")
    ckpt = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    if ckpt.get("max_keep_ckpts", 1) > 1 or ckpt.get("save_last") is False:
        out.append("default_hooks.checkpoint: only last.pth (every interval and on stop) and best.pth are kept")
    if ckpt.get("save_best") not in (None, "auto", "coco/bbox_mAP"):
        out.append(f"default_hooks.checkpoint.save_best={ckpt['save_best']!r}: best.pth follows COCO AP")
    if distributed and uses_syncbn(cfg.get("model")) and not cuda:
        out.append("SyncBN runs as BatchNorm on CPU (each rank keeps its own statistics); torch's SyncBatchNorm "
                   "needs CUDA")
    return out
