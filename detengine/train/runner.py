"""Train / evaluate / export from a config: what the CLI and the GUI's training panel call."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import Config, load_config
from ..evaluation import detections_to_coco_results, evaluate_coco, write_results
from ..models import build_detector
from . import distributed as dist
from .data import HANDLED_HOOKS, EvalSet, build_data
from .ema import EMA_TYPES
from .events import ConsolePrinter, EventBus, JsonlWriter
from .optim import PARAMWISE_KEYS
from .trainer import Trainer, TrainSettings, pick_device

__all__ = ["settings_from_config", "config_warnings", "predict_dataset", "evaluate_model", "train_from_config", "evaluate_checkpoint",
           "export_checkpoint", "load_cfg", "make_run_dir"]


def load_cfg(config) -> dict:
    if isinstance(config, (str, Path)):
        from ..cli import resolve_config
        return load_config(resolve_config(str(config))).to_dict()
    return config.to_dict() if isinstance(config, Config) else dict(config)


def _schedule_from(schedulers: list[dict], s: dict, cfg_lr: float | None) -> None:
    for sch in schedulers or []:
        kind = sch.get("type")
        if kind == "LinearLR":
            s["warmup_ratio"] = sch.get("start_factor", 0.001)
            s["warmup_iters"] = int(sch.get("end", 500)) if not sch.get("by_epoch", False) else 0
        elif kind == "MultiStepLR":
            s["schedule"], s["milestones"], s["gamma"] = "step", tuple(sch.get("milestones", ())), sch.get("gamma", 0.1)
        elif kind == "CosineAnnealingLR":
            s["schedule"] = "cosine"
            s["cosine_by_epoch"] = bool(sch.get("by_epoch", True))
            s["cosine_begin"] = int(sch.get("begin", 0))
            s["cosine_end"] = None if sch.get("end") is None else int(sch["end"])
            base_lr = (cfg_lr or 0.01)
            s["min_lr_ratio"] = sch["eta_min_ratio"] if "eta_min_ratio" in sch else sch.get("eta_min", 0.0) / base_lr
        elif kind in ("ConstantLR", None):
            s["schedule"] = "constant"
        else:
            raise ValueError(f"param_scheduler type {kind!r} is not supported; use LinearLR, MultiStepLR or "
                             f"CosineAnnealingLR")


def settings_from_config(cfg: dict, **overrides) -> TrainSettings:
    """mmdetection's ``train_dataloader``, ``optim_wrapper``, ``param_scheduler``, ``train_cfg``,
    ``default_hooks`` and ``randomness`` as :class:`TrainSettings`; non-None ``overrides`` win."""
    s: dict = {"warmup_iters": 0}  # no LinearLR in the config: no warm-up, as mmdetection
    loader = cfg.get("train_dataloader", {})
    s["batch_size"] = loader.get("batch_size", 8)
    s["num_workers"] = loader.get("num_workers", 0)
    optim = cfg.get("optim_wrapper", {})
    opt = optim.get("optimizer", {})
    s["optimizer"] = opt.get("type", "SGD")
    for key in ("lr", "momentum", "weight_decay"):
        if key in opt:
            s[key] = opt[key]
    if opt.get("fused"):
        if s["optimizer"] != "AdamW":
            raise ValueError(f"fused=True is supported for AdamW only, not {s['optimizer']!r}")
        s["fused"] = True
    s["grad_clip"] = (optim.get("clip_grad") or {}).get("max_norm")
    paramwise = optim.get("paramwise_cfg")
    if paramwise:
        unknown = sorted(set(paramwise) - set(PARAMWISE_KEYS))
        if unknown:
            raise ValueError(f"optim_wrapper.paramwise_cfg has unknown keys {unknown}; known: {list(PARAMWISE_KEYS)}")
        s["paramwise"] = dict(paramwise)
    ema = _ema_hook(cfg)
    if ema is not None:
        s["ema"] = ema
    _schedule_from(cfg.get("param_scheduler", []), s, opt.get("lr"))
    loop = cfg.get("train_cfg", {})
    s["max_epochs"] = loop.get("max_epochs", 12)
    s["eval_interval"] = loop.get("val_interval", 1)
    s["checkpoint_interval"] = cfg.get("default_hooks", {}).get("checkpoint", {}).get("interval", 1)
    s["seed"] = (cfg.get("randomness") or {}).get("seed", 0) or 0
    s.update({k: v for k, v in overrides.items() if v is not None})
    return TrainSettings(**s)


_EMA_ARGS = ("ema_type", "momentum", "gamma", "interval", "update_buffers", "begin_iter", "begin_epoch",
             "strict_load", "priority")
_OPTIM_WRAPPER_KEYS = ("type", "optimizer", "paramwise_cfg", "clip_grad", "loss_scale", "dtype")


def _ema_hook(cfg: dict) -> dict | None:
    """The ``EMAHook`` of ``custom_hooks`` as :class:`~detengine.train.ema.ModelEMA` arguments."""
    hooks = [h for h in cfg.get("custom_hooks") or [] if isinstance(h, dict) and h.get("type") == "EMAHook"]
    if not hooks:
        return None
    args = {k: v for k, v in hooks[-1].items() if k != "type"}
    unknown = sorted(set(args) - set(_EMA_ARGS))
    if unknown:
        raise ValueError(f"custom_hooks EMAHook: unknown arguments {unknown}; known: {list(_EMA_ARGS)}")
    if args.get("ema_type", "ExponentialMovingAverage") not in EMA_TYPES:
        raise ValueError(f"custom_hooks EMAHook: ema_type must be one of {list(EMA_TYPES)}, "
                         f"got {args['ema_type']!r}")
    args.pop("priority", None)
    return args


def config_warnings(cfg: dict) -> list[str]:
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
    if optim.get("type") == "AmpOptimWrapper":
        out.append("optim_wrapper AmpOptimWrapper: mixed precision is used on CUDA whatever the wrapper; "
                   "CPU runs use float32")
    return out


def make_run_dir(root, name: str) -> Path:
    """``root/name-YYYYmmdd-HHMMSS`` (suffixed if it exists)."""
    base = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def predict_dataset(model, eval_set, collate, *, batch_size: int = 8, device=None, indices=None, **overrides):
    """Detections (original image pixels) for ``indices`` (default all) of ``eval_set``."""
    device = device or next(model.parameters()).device
    indices = list(range(len(eval_set))) if indices is None else list(indices)
    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        batch = collate([eval_set[i] for i in indices[start:start + batch_size]])
        batch["images"] = batch["images"].to(device)
        out += model.predict(batch, **overrides)
    return out


def evaluate_model(model, dataset, test_pipeline, collate, *, backend: str = "faster-coco-eval",
                   batch_size: int = 8, **overrides):
    """COCO metrics on ``dataset`` (a CocoDataset); each rank predicts its shard, rank 0 scores."""
    eval_set = EvalSet(dataset, test_pipeline)
    mine = list(range(dist.rank(), len(eval_set), dist.world_size()))  # no padding: each image once
    dets = predict_dataset(model, eval_set, collate, batch_size=batch_size, indices=mine, **overrides)
    results = detections_to_coco_results(dets, _label_map(dataset))
    gathered = dist.all_gather_objects(results)
    metrics = None
    if dist.is_main():
        metrics = evaluate_coco(dataset.coco.dataset, [r for part in gathered for r in part], backend=backend)
    return dist.broadcast_object(metrics)


def _label_map(dataset) -> dict[int, int]:
    """Contiguous label -> the file's category id (VOC: 1-based class index)."""
    return getattr(dataset, "label_to_cat_id", None) or {i: i + 1 for i in range(len(dataset.class_names))}


def train_from_config(config, data=None, *, epochs=None, device=None, resume=None, work_dir=None, runs_root="runs",
                      batch_size=None, lr=None, max_iters=None, val_data=None, images=None, events=None,
                      console=True, eval_backend="faster-coco-eval", num_workers=None, trainer_hook=None):
    """Train a detector; returns the trainer's summary (with ``work_dir``). ``trainer_hook(trainer)``
    is called before the loop starts (the GUI keeps the trainer to stop or step it)."""
    cfg = load_cfg(config)
    dev = pick_device(device)
    dist.init_from_env(dev)
    if dev.type == "cuda" and dist.is_distributed():
        dev = torch.device("cuda", torch.cuda.current_device())
    settings = settings_from_config(cfg, max_epochs=epochs, batch_size=batch_size, lr=lr, max_iters=max_iters,
                                    num_workers=num_workers)
    bundle = build_data(cfg, data, val_data=val_data, images=images, seed=settings.seed)
    torch.manual_seed(settings.seed)
    model_cfg = dict(cfg["model"])
    model_cfg["bbox_head"] = dict(model_cfg["bbox_head"], num_classes=len(bundle.class_names))
    model = build_detector(model_cfg)
    events = events or EventBus()
    run_dir = Path(work_dir) if work_dir else None
    if dist.is_main():
        run_dir = run_dir or make_run_dir(runs_root, Path(str(cfg.get("_name", "run"))).stem)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_to_save = dict(cfg, model=model_cfg)
        (run_dir / "config.py").write_text(Config.from_dict(cfg_to_save).pretty_text())
        (run_dir / "classes.txt").write_text("\n".join(bundle.class_names) + "\n")
        events.subscribe(JsonlWriter(run_dir / "log.jsonl"))
        if console:
            events.subscribe(ConsolePrinter(settings.log_interval))
    run_dir = Path(dist.broadcast_object(str(run_dir)))
    if dist.is_main():
        for message in config_warnings(cfg):
            events.emit({"type": "warning", "message": message})

    def evaluate(m, epoch):
        if bundle.val is None:
            return None
        return evaluate_model(m, bundle.val, bundle.test_pipeline, bundle.collate, backend=eval_backend,
                              batch_size=settings.batch_size)

    label_to_cat = _label_map(bundle.train.dataset if bundle.train is not None else bundle.val)
    meta = {"classes": list(bundle.class_names),
            "category_ids": [int(label_to_cat[i]) for i in range(len(bundle.class_names))]}
    trainer = Trainer(model, bundle.train, bundle.collate, settings=settings, work_dir=run_dir, device=dev,
                      events=events, evaluate=evaluate, meta=meta)
    if resume:
        trainer.resume(resume)
    if dist.is_main():
        events.emit({"type": "data", "message": bundle.description, "classes": bundle.class_names})
    if trainer_hook:
        trainer_hook(trainer)
    try:
        summary = trainer.run()
    finally:
        for fn in list(events._subscribers):
            if isinstance(fn, (JsonlWriter, ConsolePrinter)):
                events.unsubscribe(fn)
                if isinstance(fn, JsonlWriter):
                    fn.close()
    summary["work_dir"] = str(run_dir)
    return summary


def _model_from_checkpoint(config, checkpoint, device):
    cfg = load_cfg(config)
    from .checkpoint import load_checkpoint
    ckpt = load_checkpoint(checkpoint)
    model_cfg = ckpt.get("model_cfg") or cfg["model"]
    model = build_detector(model_cfg)
    model.load_state_dict(ckpt.get("model", ckpt.get("state_dict", ckpt)))
    return cfg, model.to(device)


def evaluate_checkpoint(config, checkpoint, data=None, *, backend="faster-coco-eval", device=None, val_data=None,
                        images=None, batch_size=8):
    """COCO metrics of a checkpoint on the val split (or ``val_data``)."""
    dev = pick_device(device)
    cfg, model = _model_from_checkpoint(config, checkpoint, dev)
    bundle = build_data(cfg, data, val_data=val_data, images=images)
    dataset = bundle.val if bundle.val is not None else bundle.train.dataset
    return evaluate_model(model, dataset, bundle.test_pipeline, bundle.collate, backend=backend, batch_size=batch_size)


def export_checkpoint(config, checkpoint, out, data=None, *, device=None, val_data=None, images=None,
                      split="val", batch_size=8) -> int:
    """Write COCO results JSON of a checkpoint's detections on a split; returns the count."""
    dev = pick_device(device)
    cfg, model = _model_from_checkpoint(config, checkpoint, dev)
    bundle = build_data(cfg, data, val_data=val_data, images=images)
    dataset = bundle.val if (split == "val" and bundle.val is not None) else bundle.train.dataset
    dets = predict_dataset(model, EvalSet(dataset, bundle.test_pipeline), bundle.collate, batch_size=batch_size)
    results = detections_to_coco_results(dets, _label_map(dataset))
    write_results(out, results)
    return len(results)
