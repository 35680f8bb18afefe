"""An mmdetection config's training parts as :class:`~detengine.train.trainer.TrainSettings`.

Read: ``train_dataloader`` (batch size, workers), ``optim_wrapper`` (SGD / AdamW and their
arguments, ``clip_grad``, ``paramwise_cfg``, ``dtype``), ``param_scheduler`` (``LinearLR``,
``MultiStepLR``, ``CosineAnnealingLR``, ``ConstantLR`` and mmdetection's ``QuadraticWarmupLR``, chained
exactly as mmengine chains them: :mod:`detengine.train.schedule`), ``train_cfg``
(``EpochBasedTrainLoop``: ``max_epochs``, ``val_interval``, ``val_begin``,
``dynamic_intervals``), ``default_hooks.checkpoint``, ``custom_hooks`` (``EMAHook``; the data
side handles ``PipelineSwitchHook``), ``auto_scale_lr`` and ``randomness.seed``; and DetScope's own
``probe=dict(interval='auto', images=16)``: the per-GT probe of :mod:`detengine.probe` (``interval``
in iterations, 0 = off; ``'auto'``: on for training splits of up to 10,000 images, every
min(50, iterations per epoch) iterations, times ceil(images / (2 x batch size)); off for bigger
splits: :func:`detengine.probe.probe_interval`).

What a config asks for and the trainer cannot do either raises ``ValueError`` saying so (when
training would otherwise differ in substance) or is listed by :func:`config_warnings` (shown at
the start of a run), never dropped silently.
"""
from __future__ import annotations

import inspect

import torch

from ..data.pipeline import MULTI_IMAGE_MIX
from ..probe import check_probe_settings
from .data import HANDLED_HOOKS, mix_dataset_of
from .ema import EMA_TYPES
from .optim import PARAMWISE_KEYS
from .schedule import scheduler_kind
from .trainer import TrainSettings

__all__ = ["settings_from_config", "config_warnings", "run_warnings", "uses_syncbn", "keys_not_acted_on"]

_OPTIMIZERS = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW}
_OPTIM_WRAPPER_KEYS = ("type", "optimizer", "paramwise_cfg", "clip_grad", "loss_scale", "dtype")
_WRAPPERS = ("OptimWrapper", "AmpOptimWrapper")
_EMA_ARGS = ("ema_type", "momentum", "gamma", "interval", "update_buffers", "begin_iter", "begin_epoch",
             "strict_load", "priority")
_SCHEDULER_KEYS = {
    "LinearLR": ("start_factor", "end_factor", "begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
    "MultiStepLR": ("milestones", "gamma", "begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
    "CosineAnnealingLR": ("T_max", "eta_min", "eta_min_ratio", "begin", "end", "by_epoch", "convert_to_iter_based",
                          "verbose"),
    "ConstantLR": ("factor", "begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
    "QuadraticWarmupLR": ("begin", "end", "by_epoch", "convert_to_iter_based", "verbose"),
}
_WARMUPS = ("LinearLR", "QuadraticWarmupLR")
_LOOP_KEYS = ("type", "max_epochs", "val_interval", "val_begin", "dynamic_intervals")
#: top-level keys a run reads (model, data, optimisation, schedule, hooks, weights)
_ACTED_TOP = {"model", "train_pipeline", "test_pipeline", "train_dataloader", "val_dataloader", "test_dataloader",
              "optim_wrapper", "param_scheduler", "train_cfg", "val_cfg", "test_cfg", "default_hooks",
              "custom_hooks", "auto_scale_lr", "randomness", "load_from", "resume", "data", "val_evaluator",
              "test_evaluator", "probe"}
#: mmengine runtime keys a run here does without (their parts are DetScope's own or absent)
_RUNTIME_KEYS = ("visualizer", "vis_backends", "log_processor", "log_level", "launcher", "env_cfg", "default_scope",
                 "tta_model", "tta_pipeline", "model_wrapper_cfg", "work_dir", "experiment_name", "compile",
                 "strategy")
#: default_hooks a run carries out: checkpoints, the log interval, the schedule, timing and seeding
_ACTED_HOOKS = {"checkpoint", "logger", "param_scheduler", "timer", "sampler_seed"}


def _scheduler(sch: dict) -> dict:
    """A ``param_scheduler`` entry, checked: a known type with arguments mmengine accepts."""
    kind = scheduler_kind(sch.get("type"))   # 'mmdet.QuadraticWarmupLR' as YOLOX's configs write it
    if kind not in _SCHEDULER_KEYS:
        raise ValueError(f"param_scheduler type {sch.get('type')!r} is not supported; use one of "
                         f"{list(_SCHEDULER_KEYS)}")
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
    if kind == "QuadraticWarmupLR" and sch.get("end") is None:     # mmdetection raises the same
        raise ValueError("param_scheduler QuadraticWarmupLR needs end (the iteration or epoch the warm-up ends at)")
    return {k: v for k, v in sch.items() if k != "verbose"}


def _optimizer(optim: dict, s: dict) -> None:
    opt = dict(optim.get("optimizer") or {})
    opt.pop("_delete_", None)
    kind = opt.pop("type", "SGD")
    if kind not in _OPTIMIZERS:
        raise ValueError(f"optim_wrapper.optimizer type must be one of {list(_OPTIMIZERS)}, got {kind!r}")
    s["optimizer"] = kind
    signature = inspect.signature(_OPTIMIZERS[kind]).parameters
    accepted = set(signature) - {"params"}
    # what the config leaves out is the optimizer's own default (SGD: lr 1e-3, momentum 0), as in
    # mmengine; no weight_decay: None (the optimizer's default, and no decay rules apply)
    s["lr"] = float(signature["lr"].default)
    if "momentum" in signature:
        s["momentum"] = float(signature["momentum"].default)
    s["weight_decay"] = None
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
        if clip.get("max_norm") is None:
            raise ValueError("optim_wrapper.clip_grad needs max_norm")
        s["grad_clip"] = clip.pop("max_norm")
        s["grad_clip_norm_type"] = float(clip.pop("norm_type", 2.0))
        unknown = sorted(set(clip) - {"error_if_nonfinite", "foreach"})
        if unknown:
            raise ValueError(f"optim_wrapper.clip_grad: unknown arguments {unknown}")
        s["grad_clip_args"] = clip  # passed on to torch.nn.utils.clip_grad_norm_, as mmengine does
    wrapper = optim.get("type", "OptimWrapper")
    if wrapper not in _WRAPPERS:
        raise ValueError(f"optim_wrapper type must be one of {list(_WRAPPERS)}, got {wrapper!r}")
    if optim.get("accumulative_counts", 1) != 1 or optim.get("constructor"):
        raise ValueError("optim_wrapper accumulative_counts / constructor are not supported here")
    s["amp"] = wrapper == "AmpOptimWrapper"  # mmengine: mixed precision only with AmpOptimWrapper
    loss_scale = optim.get("loss_scale", "dynamic")
    if not (loss_scale == "dynamic" or isinstance(loss_scale, (int, float, dict))):
        raise ValueError(f"optim_wrapper.loss_scale must be 'dynamic', a number or a dict, got {loss_scale!r}")
    s["loss_scale"] = loss_scale
    paramwise = optim.get("paramwise_cfg")
    if paramwise:
        unknown = sorted(set(paramwise) - set(PARAMWISE_KEYS))
        if unknown:
            raise ValueError(f"optim_wrapper.paramwise_cfg has unknown keys {unknown}; known: {list(PARAMWISE_KEYS)}")
        s["paramwise"] = dict(paramwise)
    if optim.get("dtype") is not None:
        if optim["dtype"] not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"optim_wrapper.dtype must be 'float16', 'bfloat16' or 'float32', got {optim['dtype']!r}")
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
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else schedulers  # mmengine accepts one dict
    s["schedulers"] = tuple(_scheduler(dict(sch)) for sch in schedulers)
    _loop(cfg, s)
    ema = _ema_hook(cfg)
    if ema is not None:
        s["ema"] = ema
    ckpt = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    if ckpt.get("by_epoch", True) is False:
        raise ValueError("default_hooks.checkpoint: by_epoch=False (an interval in iterations) is not supported; "
                         "checkpoints are saved every `interval` epochs and on stop")
    s["checkpoint_interval"] = int(ckpt.get("interval", 1))
    logger = (cfg.get("default_hooks") or {}).get("logger") or {}
    if "interval" in logger:
        s["log_interval"] = int(logger["interval"])
    scale = cfg.get("auto_scale_lr") or {}
    if scale.get("enable"):
        if "base_batch_size" not in scale:
            raise ValueError("auto_scale_lr needs base_batch_size")
        s["auto_scale_base_batch"] = int(scale["base_batch_size"])
    randomness = cfg.get("randomness") or {}
    s["seed"] = randomness.get("seed", 0) or 0
    s["deterministic"] = bool(randomness.get("deterministic", False))
    s["probe"] = check_probe_settings(cfg.get("probe"))
    s.update({k: v for k, v in overrides.items() if v is not None})
    return TrainSettings(**s)


def run_warnings(s: TrainSettings, iters_per_epoch: int, switch_epochs=()) -> list[str]:
    """What of the config will not happen in a run this long (``--epochs`` / the window's epochs
    shorter than the config's): schedulers that never start or are cut short, a warm-up longer
    than the run, evaluation intervals, pipeline switches and EMA starts beyond the end. mmengine
    behaves the same, silently; here it is said at the start."""
    ipe = max(int(iters_per_epoch), 1)
    total, out = s.max_epochs * ipe, []
    run = f"this run has {s.max_epochs} epochs of {ipe} iterations"
    for sch in s.schedulers:
        by_epoch = sch.get("by_epoch", True)
        unit = ipe if by_epoch else 1
        begin, end = sch.get("begin", 0) * unit, sch.get("end")
        if begin >= total:
            out.append(f"param_scheduler {sch['type']} begins at {'epoch' if by_epoch else 'iteration'} "
                       f"{sch.get('begin', 0)} and never starts: {run}")
        elif end is not None and end * unit > total:
            what = "the warm-up never reaches the full rate" if scheduler_kind(sch["type"]) in _WARMUPS \
                else "it is cut short"
            out.append(f"param_scheduler {sch['type']} ends at {'epoch' if by_epoch else 'iteration'} {end}: "
                       f"{what} ({run})")
    for epoch, _ in s.dynamic_intervals:
        if epoch >= s.max_epochs:
            out.append(f"train_cfg.dynamic_intervals from epoch {epoch} never applies: {run}")
    for epoch in switch_epochs:
        if epoch >= s.max_epochs:
            out.append(f"PipelineSwitchHook at epoch {epoch} never switches: {run}")
    if s.ema and (s.ema.get("begin_epoch", 0) > s.max_epochs or s.ema.get("begin_iter", 0) > total):
        out.append(f"EMAHook starts after the end: {run}")
    return out


def uses_syncbn(node) -> bool:
    """Whether a (model) config asks for ``SyncBN`` anywhere."""
    if isinstance(node, dict):
        return node.get("type") == "SyncBN" or any(uses_syncbn(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(uses_syncbn(v) for v in node)
    return False


def keys_not_acted_on(cfg: dict) -> list[str]:
    """The config keys a run does not act on: mmengine's runtime keys (``visualizer``,
    ``tta_model``, ``log_processor`` ...), any other top-level component (a dict with a ``type``)
    and ``default_hooks`` entries beyond checkpoint / logger / param_scheduler / timer /
    sampler_seed. Top-level plain values and lists are the config's own variables (``max_epochs``,
    ``train_pipeline_stage2``...): they act through the keys that use them."""
    out = [k for k in _RUNTIME_KEYS if k in cfg]
    # a top-level data set (mmdetection's YOLOX files: train_dataset) is a variable of the data loaders,
    # which say what of their data set is read
    out += [k for k, v in cfg.items() if k not in _ACTED_TOP and k not in _RUNTIME_KEYS and not k.startswith("_")
            and isinstance(v, dict) and "type" in v and not str(v["type"]).endswith("Dataset")]
    hooks = cfg.get("default_hooks") or {}
    out += [f"default_hooks.{k}" for k, v in hooks.items() if k not in _ACTED_HOOKS and v is not None]
    return out


def config_warnings(cfg: dict, *, distributed: bool = False, cuda: bool = False) -> list[str]:
    """Parts of an mmdetection config that training here does not act on, one sentence each
    (shown at the start of a run; nothing is ignored silently)."""
    out = []
    unused = keys_not_acted_on(cfg)
    if unused:
        out.append(f"config keys this run does not act on: {', '.join(unused)}")
    for hook in cfg.get("custom_hooks") or []:
        kind = hook.get("type") if isinstance(hook, dict) else hook
        if kind not in ("EMAHook", "YOLOXModeSwitchHook") and kind not in HANDLED_HOOKS:  # the runner does YOLOX's
            out.append(f"custom_hooks: {kind!r} is not supported here and is ignored")
    optim = cfg.get("optim_wrapper") or {}
    for key in sorted(set(optim) - set(_OPTIM_WRAPPER_KEYS)):
        out.append(f"optim_wrapper.{key} is not supported here and is ignored")
    loader = cfg.get("train_dataloader") or {}
    if loader.get("batch_sampler"):
        out.append("train_dataloader.batch_sampler is not used: batches follow the shuffled order "
                   "(mmdetection's AspectRatioBatchSampler groups images by aspect ratio)")
    if (loader.get("sampler") or {}).get("shuffle") is False:
        out.append("train_dataloader.sampler.shuffle=False is not used: training always shuffles (seeded)")
    if (cfg.get("randomness") or {}).get("diff_rank_seed"):
        out.append("randomness.diff_rank_seed is not needed: augmentation is seeded per image, so ranks differ anyway")
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if key == "train_dataloader" and mix_dataset_of(cfg) is not None:
            out.append(f"train_dataloader.dataset: of mmdetection's {MULTI_IMAGE_MIX} its pipeline, skip_type_keys "
                       f"and max_refetch are read (the train pipeline); the data set inside it is not: the data come "
                       f"from --data (default: the config's data.default, else the built-in synthetic set)")
            continue
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
