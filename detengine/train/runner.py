"""Train / evaluate / export from a config: what the CLI and the GUI's training panel call."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config, load_config
from ..data import ImageReadError
from ..evaluation import detections_to_coco_results, evaluate_coco, write_results
from ..heads.yolox import apply_mode_switch
from ..io import check_output_path
from ..models import build_detector
from ..probe import make_probe
from ..shipped import find_config
from . import distributed as dist
from .batch_augments import build_batch_augments
from .data import EvalSet, build_data
from .events import ConsolePrinter, EpochProgress, EventBus, JsonlWriter
from .outputs import RunOutputs
from .runs import make_run_dir, plain_config, register_run
from .settings import config_warnings, run_warnings, settings_from_config, uses_syncbn
from .trainer import Trainer, pick_device

__all__ = ["settings_from_config", "config_warnings", "predict_dataset", "evaluate_model", "train_from_config",
           "start_weights",
           "evaluate_checkpoint", "export_checkpoint", "load_cfg", "make_run_dir", "ClassMismatch",
           "checkpoint_label_map"]


def load_cfg(config) -> dict:
    if isinstance(config, (str, Path)):
        return load_config(find_config(config)).to_dict()
    return config.to_dict() if isinstance(config, Config) else dict(config)


def predict_dataset(model, eval_set, collate, *, batch_size: int = 8, device=None, indices=None, problems=None,
                    progress=None, **overrides):
    """Detections (original image pixels) for ``indices`` (default all) of ``eval_set``. An image
    that cannot be read is skipped, its message appended to ``problems`` (a list) when given.
    ``progress(done, total)`` is called after each batch."""
    device = device or next(model.parameters()).device
    indices = list(range(len(eval_set))) if indices is None else list(indices)
    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        samples = []
        for i in indices[start:start + batch_size]:
            try:
                samples.append(eval_set[i])
            except ImageReadError as exc:
                if problems is None:
                    raise
                problems.append(f"{exc}: skipped")
        if samples:
            batch = collate(samples)
            batch["images"] = batch["images"].to(device)
            out += model.predict(batch, record=False, **overrides)
        if progress is not None:
            progress(min(start + batch_size, len(indices)), len(indices))
    return out


def evaluate_model(model, dataset, test_pipeline, collate, *, backend: str = "faster-coco-eval",
                   batch_size: int = 8, label_to_cat: dict[int, int] | None = None, problems=None, progress=None,
                   results_out: list | None = None, **overrides):
    """COCO metrics on ``dataset`` (a CocoDataset); each rank predicts its shard, rank 0 scores.
    ``label_to_cat``: model label -> category id (default: the dataset's own labels). Images that
    cannot be read are skipped (listed in ``problems`` on rank 0) and left out of the metrics.
    ``progress(done, total)``: this rank's predictions (give it on rank 0 only for one bar).
    ``results_out``: a list that gets the COCO results scored, on rank 0 (the run's pictures)."""
    eval_set = EvalSet(dataset, test_pipeline)
    mine = list(range(dist.rank(), len(eval_set), dist.world_size()))  # no padding: each image once
    mine_problems: list[str] = []
    dets = predict_dataset(model, eval_set, collate, batch_size=batch_size, indices=mine, problems=mine_problems,
                           progress=progress, **overrides)
    results = detections_to_coco_results(dets, label_to_cat or _label_map(dataset))
    gathered = dist.all_gather_objects((results, [int(d.meta["image_id"]) for d in dets], mine_problems))
    metrics = None
    if dist.is_main():
        skipped = [p for part in gathered for p in part[2]]
        ids = [i for part in gathered for i in part[1]] if skipped else None
        if problems is not None:
            problems += skipped
        results = [r for part in gathered for r in part[0]]
        metrics = evaluate_coco(dataset.coco.dataset, results, backend=backend, image_ids=ids)
        if results_out is not None:
            results_out += results
    return dist.broadcast_object(metrics)


def _resume_source(resume, cfg, load_from, work_dir, runs_root, notes: list) -> str | None:
    """The checkpoint to resume: an explicit path; with ``"auto"`` or the config's ``resume=True``,
    ``load_from`` if given, else the work folder's ``last.pth`` (no ``--work-dir``: the newest run
    folder of this config under ``runs_root``), else none (mmengine then trains from the start)."""
    if resume and resume != "auto":
        return str(resume)
    if not (resume == "auto" or cfg.get("resume") is True):
        return None
    if load_from:
        return str(load_from)
    name = Path(str(cfg.get("_name", "run"))).stem
    folders = [Path(work_dir)] if work_dir else sorted(Path(runs_root).glob(f"{name}-*"),
                                                        key=lambda p: p.stat().st_mtime)
    found = [f / "last.pth" for f in folders if (f / "last.pth").is_file()]
    if not found:
        where = work_dir or f"{runs_root}/{name}-*"
        notes.append(f"resume=True: no checkpoint in {where}; training from the start")
        return None
    notes.append(f"resume=True: continuing {found[-1]}")
    return str(found[-1])


def start_weights(model, model_cfg: dict, *, load_from=None, resuming: bool = False,
                  pretrained: bool = True) -> list[str]:
    """Load ``load_from`` or the backbone's pretrained ``init_cfg`` into ``model``; the log lines,
    with a warning when frozen stages or frozen BN statistics would keep a random initialisation."""
    from ..pretrained import apply_backbone_init, backbone_init_checkpoint, load_from_checkpoint
    init = backbone_init_checkpoint(model_cfg)
    if resuming:
        return []
    if load_from:
        lines = [load_from_checkpoint(model, str(load_from))]
        if init:
            lines.append(f"backbone init_cfg ({init['checkpoint']}) not loaded: load_from gives the weights")
        return lines
    if init and pretrained:
        return [apply_backbone_init(model, model_cfg)]
    lines = [f"backbone init_cfg ({init['checkpoint']}) not loaded: training from scratch as asked"] if init else []
    b = model_cfg.get("backbone") or {}
    frozen = []
    if b.get("frozen_stages", -1) >= 0:
        frozen.append(f"frozen_stages={b['frozen_stages']}")
    if b.get("norm_eval"):
        frozen.append("norm_eval=True")
    if (b.get("norm_cfg") or {}).get("requires_grad") is False:
        frozen.append("norm_cfg.requires_grad=False")
    if frozen:
        lines.append(f"the backbone is randomly initialised and {', '.join(frozen)} keeps parts of it as initialised "
                     "(mmdetection freezes them to keep pretrained weights): give model.backbone.init_cfg="
                     "dict(type='Pretrained', checkpoint=...) or load_from, or set frozen_stages=-1, norm_eval=False")
    return lines


def _label_map(dataset) -> dict[int, int]:
    """Contiguous label -> the file's category id (VOC: 1-based class index)."""
    return getattr(dataset, "label_to_cat_id", None) or {i: i + 1 for i in range(len(dataset.class_names))}


def train_from_config(config, data=None, *, epochs=None, device=None, resume=None, work_dir=None, runs_root="runs",
                      batch_size=None, lr=None, max_iters=None, val_data=None, images=None, events=None,
                      console=True, eval_backend="faster-coco-eval", num_workers=None, amp=None, trainer_hook=None,
                      load_from=None, pretrained: bool = True, progress=None):
    """Train a detector; returns the trainer's summary (with ``work_dir``). ``trainer_hook(trainer)``
    is called before the loop starts (the GUI keeps the trainer to stop or step it).

    Where the weights start (mmengine's order): ``resume`` (a checkpoint, or ``"auto"`` / the
    config's ``resume=True``: the latest of the work folder) continues a run exactly; else
    ``load_from`` (argument, else the config's) loads every fitting weight; else the backbone's
    ``init_cfg`` Pretrained checkpoint (``pretrained=False``: a random backbone, said in the log).

    ``progress``: a factory ``(desc, unit) -> bar or None`` (the CLI's
    :func:`~detengine.progress.progress_bar`): a bar per epoch and per evaluation, on rank 0."""
    cfg = load_cfg(config)
    # the run folder is checked before anything starts (every rank: none waits for a failed one)
    check_output_path(work_dir or runs_root, "folder", "run" if work_dir else "runs")
    dev = pick_device(device)
    dist.init_from_env(dev)
    if dev.type == "cuda" and dist.is_distributed():
        dev = torch.device("cuda", torch.cuda.current_device())
    settings = settings_from_config(cfg, max_epochs=epochs, batch_size=batch_size, lr=lr, max_iters=max_iters,
                                    num_workers=num_workers, amp=amp)
    if settings.deterministic:  # mmengine's randomness.deterministic
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    bundle = build_data(cfg, data, val_data=val_data, images=images, seed=settings.seed,
                        max_epochs=settings.max_epochs)     # YOLOXModeSwitchHook's pipeline switch
    torch.manual_seed(settings.seed)
    model_cfg = dict(cfg["model"])
    model_cfg["bbox_head"] = dict(model_cfg["bbox_head"], num_classes=len(bundle.class_names))
    model = build_detector(model_cfg)
    notes = config_warnings(cfg, distributed=dist.is_distributed(), cuda=dev.type == "cuda")
    notes += apply_mode_switch(model, cfg, settings.max_epochs)    # YOLOXModeSwitchHook: the L1 loss, late
    load_from = cfg.get("load_from") if load_from is None else load_from
    resume = _resume_source(resume, cfg, load_from, work_dir, runs_root, notes)
    notes += start_weights(model, model_cfg, load_from=load_from, resuming=bool(resume), pretrained=pretrained)
    if settings.amp and dev.type != "cuda":
        notes.append("mixed precision (AmpOptimWrapper / --amp) is used on CUDA only; this CPU run uses float32")
    if dist.is_distributed() and dev.type == "cuda" and uses_syncbn(model_cfg):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # mmengine does the same under DDP
    if settings.auto_scale_base_batch:  # mmengine's auto_scale_lr: the rate follows the total batch
        ratio = dist.world_size() * settings.batch_size / settings.auto_scale_base_batch
        notes.append(f"auto_scale_lr: lr {settings.lr:g} x {ratio:g} = {settings.lr * ratio:g} "
                     f"({dist.world_size()} x {settings.batch_size} images per step, base {settings.auto_scale_base_batch})")
        settings.lr *= ratio
    events = events or EventBus()
    run_dir = Path(work_dir) if work_dir else None
    outputs = None
    if dist.is_main():
        run_dir = run_dir or make_run_dir(runs_root, Path(str(cfg.get("_name", "run"))).stem)
        run_dir.mkdir(parents=True, exist_ok=True)
        register_run(run_dir)  # the window's Runs tab lists it wherever it is
        cfg_to_save = dict(cfg, model=model_cfg)
        (run_dir / "config.py").write_text(Config.from_dict(cfg_to_save).pretty_text())
        (run_dir / "classes.txt").write_text("\n".join(bundle.class_names) + "\n")
        events.subscribe(JsonlWriter(run_dir / "log.jsonl"))
        outputs = RunOutputs(events, run_dir)  # TensorBoard, results.csv, plots
        if console:
            events.subscribe(ConsolePrinter(settings.log_interval))
        if progress is not None:
            events.subscribe(EpochProgress(progress))
    run_dir = Path(dist.broadcast_object(str(run_dir)))
    if dist.is_main():
        for message in notes:
            events.emit({"type": "warning", "message": message})

    def evaluate(m, epoch):
        if bundle.val is None:
            return None
        problems: list[str] = []
        results: list[dict] = []
        bar = progress(f"val (epoch {epoch})", "img") if progress is not None and dist.is_main() else None
        try:
            metrics = evaluate_model(m, bundle.val, bundle.test_pipeline, bundle.collate, backend=eval_backend,
                                     batch_size=settings.batch_size, problems=problems, progress=bar,
                                     results_out=results)
        finally:
            if bar is not None:
                bar.close()
        if outputs is not None and metrics is not None:
            outputs.add_validation(bundle.val, metrics, results, _label_map(bundle.val), epoch)
        if problems and dist.is_main():
            events.emit({"type": "warning", "kind": "unreadable_val_image",
                         "message": f"evaluation skipped {len(problems)} unreadable val image(s) (left out of the "
                                    f"metrics): {'; '.join(problems[:3])}"})
        return metrics

    label_to_cat = _label_map(bundle.train.dataset if bundle.train is not None else bundle.val)
    meta = {"classes": list(bundle.class_names),
            "category_ids": [int(label_to_cat[i]) for i in range(len(bundle.class_names))],
            "config": plain_config(dict(cfg, model=model_cfg))}     # as data: opening the run runs no code
    augments = build_batch_augments(model_cfg, settings.seed)
    if augments and dist.is_main():
        events.emit({"type": "data", "kind": "batch_augments",
                     "message": "batch augments (training batches only): " + ", ".join(map(repr, augments))})
    trainer = Trainer(model, bundle.train, bundle.collate, settings=settings, work_dir=run_dir, device=dev,
                      events=events, evaluate=evaluate, meta=meta, batch_augments=augments)
    if dist.is_main():
        stages = [e for e, _ in getattr(bundle.train, "stages", [])[1:]]
        for message in run_warnings(settings, trainer.iters_per_epoch, stages):
            events.emit({"type": "warning", "message": message})
        # the per-GT probe (detengine.probe): rank 0 only, it runs no collective
        trainer.probe, note = make_probe(settings.probe, run_dir, bundle.train.dataset, bundle.test_pipeline,
                                         iters_per_epoch=trainer.iters_per_epoch, seed=settings.seed,
                                         size_divisor=bundle.collate.size_divisor, batch_size=settings.batch_size)
        events.emit({"type": "data", "kind": "probe", "message": note})
    if resume:
        trainer.resume(resume)
    if dist.is_main():
        events.emit({"type": "data", "message": bundle.description, "classes": bundle.class_names})
    if trainer_hook:
        trainer_hook(trainer)
    try:
        summary = trainer.run()
    finally:
        if outputs is not None:
            outputs.close()
        for fn in list(events._subscribers):
            if isinstance(fn, (JsonlWriter, ConsolePrinter, EpochProgress)):
                events.unsubscribe(fn)
                if isinstance(fn, (JsonlWriter, EpochProgress)):
                    fn.close()
    summary["work_dir"] = str(run_dir)
    return summary


class ClassMismatch(ValueError):
    """A checkpoint's classes are not the data's: both lists are in the message."""


def checkpoint_label_map(class_names, dataset, num_classes: int, checkpoint) -> dict[int, int]:
    """Model label -> the data's category id, by class NAME (as the window maps them, with
    :func:`detengine.project_eval.class_map`): the same classes under other ids or in another
    order still meet. ``class_names``: the checkpoint's (None: a checkpoint that names none, whose
    labels are then taken as the data's in order, if the counts agree). Raises
    :class:`ClassMismatch` naming both lists when the names differ."""
    from types import SimpleNamespace

    from ..project_eval import class_map
    names = [str(n) for n in dataset.class_names]
    to_cat = _label_map(dataset)
    if class_names is None:
        if num_classes != len(names):
            raise ClassMismatch(f"checkpoint {checkpoint} names no classes and predicts {num_classes}; the data has "
                                f"{len(names)}: {names}")
        return dict(to_cat)
    labels = class_map(list(class_names), [SimpleNamespace(id=int(to_cat[i]), name=n) for i, n in enumerate(names)])
    if labels.problems:
        raise ClassMismatch(f"the checkpoint's classes do not match the data's: checkpoint {checkpoint} has "
                            f"{list(class_names)}, the data has {names} ({'; '.join(labels.problems)})")
    return dict(labels.label_to_cat)


def _model_from_checkpoint(config, checkpoint, device):
    """(config dict, the checkpoint's model on ``device``): its classes as the checkpoint names them."""
    from ..project_eval import load_model
    cfg = load_cfg(config)
    num_classes = int(cfg["model"]["bbox_head"].get("num_classes", 1))
    return cfg, load_model(cfg, num_classes, str(checkpoint)).model.to(device)


def _checkpoint_model(cfg: dict, checkpoint, dataset, device, test_cfg: dict | None = None):
    """(model on ``device``, model label -> the dataset's category id) of ``checkpoint``.
    ``test_cfg``: post-processing values put over the model's own (DetScope's checkpoints carry
    their model, so the config's ``model`` does not reach them)."""
    from ..config import merge_dicts
    from ..project_eval import checkpoint_class_names, load_model
    loaded = load_model(cfg, len(dataset.class_names), str(checkpoint))
    if test_cfg:
        loaded.model.core.test_cfg = merge_dicts(loaded.model.core.test_cfg, test_cfg)
    label_to_cat = checkpoint_label_map(checkpoint_class_names(checkpoint), dataset, loaded.num_classes, checkpoint)
    return loaded.model.to(device), label_to_cat


def evaluate_checkpoint(config, checkpoint, data=None, *, backend="faster-coco-eval", device=None, val_data=None,
                        images=None, batch_size=8, problems=None, progress=None, test_cfg=None):
    """COCO metrics of a checkpoint on the val split (or ``val_data``); its classes meet the
    data's by name (:func:`checkpoint_label_map`). Unreadable images: skipped, listed in ``problems``.
    ``progress(done, total)``: the predictions. ``test_cfg``: post-processing values over the
    checkpoint's (``model.test_cfg`` keys: ``score_thr``, ``nms.iou_threshold``, ...)."""
    dev = pick_device(device)
    cfg = load_cfg(config)
    bundle = build_data(cfg, data, val_data=val_data, images=images, for_training=False)
    dataset = bundle.val if bundle.val is not None else bundle.train.dataset
    model, label_to_cat = _checkpoint_model(cfg, checkpoint, dataset, dev, test_cfg)
    return evaluate_model(model, dataset, bundle.test_pipeline, bundle.collate, backend=backend, batch_size=batch_size,
                          label_to_cat=label_to_cat, problems=problems, progress=progress)


def export_checkpoint(config, checkpoint, out, data=None, *, device=None, val_data=None, images=None,
                      split="val", batch_size=8, problems=None, progress=None, test_cfg=None) -> int:
    """Write COCO results JSON of a checkpoint's detections on a split; returns the count. The
    output path is checked first; the classes meet the data's by name (:func:`checkpoint_label_map`).
    ``progress(done, total)``: the predictions; ``test_cfg``: as :func:`evaluate_checkpoint`'s."""
    check_output_path(out, "file", "results")
    dev = pick_device(device)
    cfg = load_cfg(config)
    bundle = build_data(cfg, data, val_data=val_data, images=images, for_training=False)
    dataset = bundle.val if (split == "val" and bundle.val is not None) else bundle.train.dataset
    model, label_to_cat = _checkpoint_model(cfg, checkpoint, dataset, dev, test_cfg)
    dets = predict_dataset(model, EvalSet(dataset, bundle.test_pipeline), bundle.collate, batch_size=batch_size,
                           problems=[] if problems is None else problems, progress=progress)
    results = detections_to_coco_results(dets, label_to_cat)
    write_results(out, results)
    return len(results)
