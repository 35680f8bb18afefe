"""``python -m detengine``: the headless command line."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from . import cli_data
from .shipped import ConfigNotFound, config_dir, find_config, shipped_configs

__all__ = ["main", "parse_box"]



def parse_box(text: str, with_label: bool) -> list[float]:
    """``"x1,y1,x2,y2[,label]"`` -> numbers, with a message that quotes the bad value."""
    parts = [p.strip() for p in text.split(",")]
    want = 5 if with_label else 4
    if len(parts) != want:
        what = "x1,y1,x2,y2,label" if with_label else "x1,y1,x2,y2"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number in {text!r}") from None
    if values[2] <= values[0] or values[3] <= values[1]:
        raise argparse.ArgumentTypeError(f"box {text!r} has x2 <= x1 or y2 <= y1")
    if with_label and (values[4] != int(values[4]) or values[4] < 0):
        raise argparse.ArgumentTypeError(f"label must be a class index >= 0, got {parts[4]!r}")
    return values


def resolve_config(name: str) -> Path:
    """A config path, or the name of a shipped config (``ssd300_coco``); exits with the names."""
    try:
        return find_config(name)
    except ConfigNotFound as exc:
        raise SystemExit(f"error: {exc}") from None


def _config_file(name: str) -> Path:
    """:func:`resolve_config`, saying on stderr when the file is not a shipped one: a config
    file is Python and runs, as in mmdetection."""
    path = resolve_config(name)
    if config_dir().resolve() not in path.resolve().parents:
        print(f"config: running {path} (config files are Python, as in mmdetection: use only files you trust)",
              file=sys.stderr)
    return path


def _cfg_option(text: str) -> tuple[str, object]:
    """One ``--cfg-options`` item, ``KEY=VALUE``, its value read as mmengine's DictAction does."""
    from .config import ConfigError, parse_cfg_options
    try:
        return next(iter(parse_cfg_options([text]).items()))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_cfg_options(p) -> None:
    p.add_argument("--cfg-options", nargs="+", action="extend", type=_cfg_option, default=[], metavar="KEY=VALUE",
                   help="override config values, as mmdetection's tools: dotted keys (a digit indexes a list), "
                        "values read as Python (1, 0.1, True, None, [a,b], (a,b), nested; a,b is a list), e.g. "
                        "model.test_cfg.score_thr=0.3 train_dataloader.batch_size=4; quote a value with brackets or spaces; "
                        "put it last (it takes every KEY=VALUE after it)")


def _load_cfg(args) -> dict:
    """The config dict of ``args.config`` with ``--cfg-options`` applied (before anything is built)."""
    from .config import apply_cfg_options, load_config
    cfg = load_config(_config_file(args.config)).to_dict()
    return apply_cfg_options(cfg, dict(args.cfg_options)) if args.cfg_options else cfg


@contextlib.contextmanager
def _progress(desc: str, unit: str = "img"):
    """A progress bar on a terminal (rank 0 under torchrun), else None: the loop reports nothing."""
    from .progress import progress_bar
    bar = progress_bar(desc, unit)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _make_synthetic_data(cfg: dict, data) -> None:
    """Generate the built-in data set with a progress bar when it is the data and not made yet;
    the job's data loading then finds it complete. Without a terminal the job makes it silently."""
    from .progress import shows_bars
    if not shows_bars():
        return
    from .data.synthetic import ensure_synthetic_dataset
    from .train.data import resolve_data
    kind, opts = resolve_data(data, cfg)
    if kind == "synthetic":
        with _progress("synthetic data set") as bar:
            ensure_synthetic_dataset(**opts, progress=bar)


def _test_cfg_options(args) -> dict:
    """The ``--cfg-options model.test_cfg.*`` values as a test_cfg dict: eval and export put them
    over the checkpoint's own post-processing (a DetScope checkpoint carries its model, so other
    ``model.*`` keys do not reach it)."""
    from .config import apply_cfg_options
    prefix = "model.test_cfg."
    return apply_cfg_options({}, {k[len(prefix):]: v for k, v in args.cfg_options if k.startswith(prefix)})


def _subparser(sub, name: str, help: str, description: str, example: str):
    """A subcommand whose --help ends with an example and the shipped configs."""
    epilog = f"example:\n  %(prog)s {example}\n\nshipped configs (give a name or a config file):\n  " + \
        "\n  ".join(_shipped_names())
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _shipped_names() -> list[str]:
    try:
        return shipped_configs()
    except FileNotFoundError as exc:  # a broken install: --help still works and says so
        return [str(exc)]


def _add_inspect(sub) -> None:
    p = _subparser(sub, "inspect", "trace anchors, assignment, loss and NMS for one image",
                   "Trace one image through a dense head: priors per level, assignment per GT "
                   "and level, GTs with no positive, loss breakdown and NMS stages.",
                   "--config ssd300_coco --gt 10,20,120,200,0 --random-preds 0 --cfg-options model.test_cfg.score_thr=0.3")
    p.add_argument("--config", required=True, help="config file or shipped name (ssd300_coco, ...)")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("WIDTH", "HEIGHT"),
                   help="network input size in pixels, width then height as mmdetection's scale=(w, h); "
                        "default: the model's own (300 for SSD300)")
    p.add_argument("--gt", action="append", default=[], type=lambda s: parse_box(s, True),
                   metavar="X1,Y1,X2,Y2,LABEL", help="a ground-truth box in input pixels (repeat)")
    p.add_argument("--ignore", action="append", default=[], type=lambda s: parse_box(s, False),
                   metavar="X1,Y1,X2,Y2", help="an ignored / crowd box (repeat)")
    preds = p.add_mutually_exclusive_group()
    preds.add_argument("--random-preds", type=int, metavar="SEED",
                       help="use seeded random head outputs to show the loss and NMS stages")
    preds.add_argument("--init-preds", action="store_true", help="use an untrained head's outputs")
    p.add_argument("--score-thr", type=float, help="override test_cfg.score_thr")
    p.add_argument("--iou-thr", type=float, help="override test_cfg.nms.iou_threshold")
    p.add_argument("--max-per-img", type=int, help="override test_cfg.max_per_img")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the whole trace as JSON")
    _add_cfg_options(p)


def _run_inspect(args) -> int:
    import torch

    from .io import atomic_write_text, check_output_path
    from .trace import head_core_for, inspect, model_config, random_predictions

    if args.json:
        check_output_path(args.json, "file", "--json")
    model = model_config(_load_cfg(args))
    shape = (args.image_size[1], args.image_size[0]) if args.image_size else None
    boxes = torch.tensor([g[:4] for g in args.gt], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([int(g[4]) for g in args.gt], dtype=torch.long)
    ignore = torch.tensor(args.ignore, dtype=torch.float32).reshape(-1, 4)
    predictions = None
    if args.init_preds:
        predictions = "init"
    elif args.random_preds is not None:
        from .builder import default_input_shape
        core = head_core_for(model)
        priors = core.priors(shape or default_input_shape(model))
        predictions = random_predictions(core, priors, seed=args.random_preds)
    overrides = {k: v for k, v in (("score_thr", args.score_thr), ("iou_threshold", args.iou_thr),
                                   ("max_per_img", args.max_per_img)) if v is not None}
    trace = inspect(shape, boxes, labels, model, predictions, gt_boxes_ignore=ignore,
                    postprocess_overrides=overrides)
    print(trace.summary())
    if args.json:
        atomic_write_text(args.json, json.dumps(trace.to_json_dict()))
        print(f"trace written to {args.json}")
    return 0


def _add_data_args(p) -> None:
    p.add_argument("--data", help="'synthetic' (the built-in data set, default), a COCO .json file, or a VOC folder")
    p.add_argument("--val-data", help="COCO .json of the validation split (with a COCO --data)")
    p.add_argument("--images", help="image folder of the COCO files (default: beside the .json)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")


def _add_train(sub) -> None:
    p = _subparser(sub, "train", "train a detector", "Train a detector from a config; also runs under torchrun "
                   "(DistributedDataParallel).", "tinyssd_synthetic --epochs 2 --work-dir runs/tiny "
                   "--cfg-options train_dataloader.batch_size=4\n  %(prog)s tinyssd_synthetic --work-dir runs/tiny "
                   "--resume          (continue its latest checkpoint)")
    p.add_argument("config", help="config file or shipped name")
    _add_data_args(p)
    p.add_argument("--epochs", type=int, help="override train_cfg.max_epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-iters", type=int, help="stop after this many iterations")
    p.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision on CUDA (as mmdetection's --amp: AmpOptimWrapper); ignored on CPU")
    p.add_argument("--workers", type=int, help="data-loading worker processes")
    p.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                   help="continue a run exactly from its checkpoint; without CKPT (or 'auto'): the latest checkpoint "
                        "of --work-dir (else of the newest runs/<config>-* folder), as the config's resume=True")
    p.add_argument("--load-from", metavar="CKPT",
                   help="start from every fitting weight of a checkpoint (DetScope's or mmdetection's; a path, URL, "
                        "torchvision:// or open-mmlab:// name), as the config's load_from: fine-tuning")
    p.add_argument("--no-pretrained", action="store_true",
                   help="do not load the backbone's init_cfg Pretrained weights: train from scratch")
    p.add_argument("--work-dir", help="run folder (default: runs/<config>-<time>)")
    p.add_argument("--control", metavar="FILE",
                   help="a file holding run / pause / stop, read after every iteration (the window uses it)")
    p.add_argument("--backend", default="faster-coco-eval", choices=["faster-coco-eval", "pycocotools"])
    p.add_argument("--seed", type=int, help="override randomness.seed (data order, augmentation, initialisation)")
    p.add_argument("--probe-interval", type=int, metavar="N",
                   help="per-GT probe: every N iterations (and at the end) put a fixed seeded set of 16 training "
                        "images through the current model's assigner and loss and append each GT's positives and "
                        "losses to probe.jsonl (the window's Dataset scan, 'during training'); 0 = off. Default: the "
                        "config's probe.interval, else auto: on for training splits of up to 10,000 images, every "
                        "min(50, iterations per epoch) iterations (times ceil(16 / (2 x batch size)) for batches "
                        "under 8: a probe stays near 2 %% of the training time); off for bigger splits")
    p.add_argument("--auto-scale-lr", action="store_true",
                   help="scale the learning rate by (total batch size) / auto_scale_lr.base_batch_size, as "
                        "mmdetection's --auto-scale-lr (the config, or --cfg-options, gives base_batch_size)")
    _add_cfg_options(p)


def _add_eval_export(sub) -> None:
    p = _subparser(sub, "eval", "COCO evaluation of a checkpoint", "COCO bbox evaluation of a checkpoint on the "
                   "val split of the data (or --val-data). A DetScope checkpoint carries its own model: of the model "
                   "keys, --cfg-options model.test_cfg.* (post-processing) applies to it.",
                   "tinyssd_synthetic runs/tiny/last.pth --work-dir runs/tiny/eval --cfg-options model.test_cfg.score_thr=0.05")
    p.add_argument("config", help="config file or shipped name")
    p.add_argument("checkpoint")
    _add_data_args(p)
    p.add_argument("--backend", default="faster-coco-eval", choices=["faster-coco-eval", "pycocotools"])
    p.add_argument("--work-dir", type=Path, help="also write the metrics to WORK_DIR/eval_<checkpoint>.json")
    _add_cfg_options(p)
    p = _subparser(sub, "export", "write COCO results JSON of a checkpoint's detections", "Predict a split with "
                   "a checkpoint and write its detections as COCO results JSON (what COCO.loadRes reads). Of the "
                   "model keys, --cfg-options model.test_cfg.* applies to a DetScope checkpoint (it carries its model).",
                   "tinyssd_synthetic runs/tiny/last.pth --out preds.json --split val")
    p.add_argument("config", help="config file or shipped name")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, type=Path, help="the results file (export has no --work-dir: this is "
                                                           "its one output)")
    p.add_argument("--split", default="val", choices=["val", "train"])
    _add_data_args(p)
    _add_cfg_options(p)


def _add_dataset_path(p) -> None:
    """The dataset, given as the first argument or as ``--data`` (as ``train`` and ``eval`` take it)."""
    p.add_argument("path", nargs="?", help="a COCO JSON file, a Pascal VOC folder or a folder of images "
                                           "(or give it as --data)")
    p.add_argument("--data", dest="data_path", metavar="PATH", help="the same as the first argument")


def _dataset_path(args) -> str:
    if args.path and args.data_path and Path(args.path) != Path(args.data_path):
        raise SystemExit(f"error: two datasets given ({args.path} and --data {args.data_path}): give one")
    path = args.path or args.data_path
    if not path:
        raise SystemExit("error: no dataset given: a COCO JSON file, a Pascal VOC folder or a folder of images, "
                         "as the first argument or --data PATH")
    return path


def _add_scan(sub) -> None:
    p = _subparser(sub, "scan", "every GT of a dataset under a config's assigner: the GTs with too few positives",
                   "The window's Dataset scan from the command line: each GT's best prior IoU and "
                   "positives under the config's assigner, listing the GTs with fewer than K.",
                   "data/annotations.json --config ssd300_coco --fewer-than 2")
    _add_dataset_path(p)
    p.add_argument("--config", required=True, help="config file or shipped name (ssd300_coco, ...)")
    p.add_argument("--fewer-than", type=int, default=1, metavar="K", help="list GTs with fewer than K positives "
                                                                          "(default 1: the GTs with none)")
    p.add_argument("--checkpoint", help="the model whose predictions a prediction-weighing assigner (RTMDet's "
                                        "DSL) uses; without it, a freshly initialised head")
    _add_cfg_options(p)


def _run_scan(args) -> int:
    from .api import AnnotationProject, load_model
    from .scan import scan_items, scan_project
    project = AnnotationProject.open(_dataset_path(args))
    cfg = _load_cfg(args)
    categories = list(project.categories)
    loaded = load_model(cfg, max(1, len(categories)), args.checkpoint) if args.checkpoint else None
    with _progress("scan") as bar:
        result = scan_project(scan_items(project, size_of=_image_size), cfg, categories, loaded=loaded,
                              checkpoint=args.checkpoint, progress=bar)
    rows, where = result.rows, result.where
    weak = result.weak(args.fewer_than)
    print(f"{len(rows)} GTs in {result.images} images; {len(weak)} with fewer than {args.fewer_than} positives")
    if len(weak):
        print("  image  file                              box id  w x h (input px)  best IoU  positives")
    for r in weak:
        image, box_id = int(where[r, 0]), int(where[r, 1])
        iou = "-" if result.is_point else f"{rows[r, 0]:.3f}"
        size = f"{rows[r, 2]:.0f}x{rows[r, 3]:.0f}"
        print(f"  {image + 1:<6} {project.images[image].file_name:<33} {box_id:>6}  {size:>16}  {iou:>8}  "
              f"{int(rows[r, 1]):>9}")
    return 0


def _add_fit_anchors(sub) -> None:
    p = _subparser(sub, "fit-anchors", "fit the anchor generator's settings to a dataset's boxes",
                   "Search the anchor settings (SSD: per-level min/max sizes and ratios; RetinaNet: "
                   "octave_base_scale and ratios) that cover the dataset's boxes best at the network input size "
                   "(SciPy's differential evolution on every GT's best prior IoU at its real position), then "
                   "scan before and after under the config's real assigner. Prints both and the config snippet.",
                   "data/annotations.json --config ssd300_coco")
    _add_dataset_path(p)
    p.add_argument("--config", required=True, help="config file or shipped name (ssd300_coco, ...)")
    p.add_argument("--split", choices=["train", "all"], default="train",
                   help="the images fitted to: the training split (default: the images' detscope_split tags, "
                        "else a seeded 80/20 split) or all")
    p.add_argument("--seed", type=int, default=0, help="the search's seed (default 0)")
    p.add_argument("--iters", type=int, default=60, help="differential evolution generations (default 60)")
    _add_cfg_options(p)


def _run_fit_anchors(args) -> int:
    from .anchor_fit import fit_anchors
    from .api import AnnotationProject, split_indices
    from .scan import scan_items
    project = AnnotationProject.open(_dataset_path(args))
    cfg = _load_cfg(args)
    wanted = set(split_indices(project)[0]) if args.split == "train" else set(range(len(project.images)))
    items = [it for it in scan_items(project, size_of=_image_size) if it.index in wanted]
    with _progress("scan") as bar:
        fit = fit_anchors(items, cfg, list(project.categories), seed=args.seed, max_iter=args.iters, progress=bar)
    print(f"{len(items)} images ({args.split}), {fit.before_coverage.gts} GTs, config {args.config}")
    print(fit.table())
    if fit.improved:
        print("fitted settings (paste into the config):")
    else:
        print("no setting covering more GTs was found; the config's own settings:")
    print(fit.snippet)
    return 0


def _image_size(path):
    """(width, height) from the file (images without a size in the annotation file)."""
    from .data.errors import ImageReadError
    from .data.folder import read_image
    try:
        h, w = read_image(path).shape[:2]
    except ImageReadError:
        return None
    return w, h


def inject_nan_fault(trainer) -> None:
    """Fault injection for testing error paths (the window's NaN message): with
    ``DETSCOPE_FAULT_NAN_AT_STEP=N`` in the environment, the loss of global step N is NaN (under
    torchrun only on rank ``DETSCOPE_FAULT_NAN_RANK`` when that is set)."""
    import os

    from .train import distributed as dist
    step = os.environ.get("DETSCOPE_FAULT_NAN_AT_STEP")
    only_rank = os.environ.get("DETSCOPE_FAULT_NAN_RANK")
    if not step or (only_rank and int(only_rank) != dist.rank()):
        return
    model, original = trainer.model, trainer.model.loss_from_outputs

    def poisoned(batch, outputs, trace_index=None, **kwargs):
        losses, trace = original(batch, outputs, trace_index, **kwargs)
        if trainer.global_step == int(step):
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses, trace
    model.loss_from_outputs = poisoned


def _train_cfg(args) -> dict:
    """The config to train: ``--cfg-options``, then ``--seed``, ``--probe-interval`` (``probe.interval``)
    and ``--auto-scale-lr`` (as mmdetection's tools/train.py: the flag enables the config's
    ``auto_scale_lr``)."""
    from .config import apply_cfg_options
    cfg = _load_cfg(args)
    options: dict = {}
    if args.seed is not None:
        options["randomness.seed"] = args.seed
    if getattr(args, "probe_interval", None) is not None:
        if args.probe_interval < 0:
            raise ValueError(f"--probe-interval must be >= 0 (0: off), got {args.probe_interval}")
        options["probe.interval"] = args.probe_interval
    if args.auto_scale_lr:
        if "base_batch_size" not in (cfg.get("auto_scale_lr") or {}):
            raise ValueError("--auto-scale-lr: the config has no auto_scale_lr.base_batch_size (the total batch its "
                             "lr is meant for; mmdetection's configs give it, e.g. 16): add --cfg-options "
                             "auto_scale_lr.base_batch_size=16")
        options["auto_scale_lr.enable"] = True
    return apply_cfg_options(cfg, options) if options else cfg


def _run_train(args) -> int:
    from .io import check_output_path
    from .progress import progress_bar, shows_bars
    from .train import distributed
    from .train.control import ControlFile, install_stop_signals
    from .train.runner import train_from_config
    from .train.trainer import TrainingDiverged

    restores = []

    def hook(trainer):
        restores.append(install_stop_signals(trainer))
        if args.control:
            trainer.control = ControlFile(args.control)
        inject_nan_fault(trainer)
    cfg = _train_cfg(args)
    check_output_path(args.work_dir or "runs", "folder", "run" if args.work_dir else "runs")  # before any work
    _make_synthetic_data(cfg, args.data)
    try:
        summary = train_from_config(cfg, args.data, epochs=args.epochs,
                                    device=args.device, resume=args.resume, work_dir=args.work_dir,
                                    batch_size=args.batch_size, lr=args.lr, max_iters=args.max_iters,
                                    val_data=args.val_data, images=args.images, eval_backend=args.backend,
                                    num_workers=args.workers, amp=args.amp, trainer_hook=hook,
                                    load_from=args.load_from, pretrained=not args.no_pretrained,
                                    progress=progress_bar if shows_bars() else None)
        rc = 0
    except TrainingDiverged as exc:  # every rank stops at the same step (the ranks agree on NaN)
        print(f"error: {exc}", file=sys.stderr)
        summary, rc = {}, 3
    except BaseException:
        distributed.cleanup()  # no barrier: the other ranks may be inside a collective
        raise
    finally:
        for restore in restores:
            restore()
    # every rank reaches the end before the group is torn down: a rank that destroys gloo's pairs
    # while another still talks to it aborts ("terminate called without an active exception")
    distributed.barrier()
    distributed.cleanup()
    if rc:
        return rc
    if summary.get("work_dir"):
        print(f"run folder: {summary['work_dir']}")
    return 0


def _warn_skipped(problems: list[str]) -> None:
    for message in problems:
        print(f"warning: {message}", file=sys.stderr)
    if problems:
        print(f"warning: {len(problems)} unreadable image(s) skipped", file=sys.stderr)


def _run_eval(args) -> int:
    from .io import atomic_write_text, check_output_path
    from .train.runner import evaluate_checkpoint
    out = None
    if args.work_dir:
        out = check_output_path(args.work_dir / f"eval_{Path(args.checkpoint).stem}.json", "file", "--work-dir")
    problems: list[str] = []
    cfg = _load_cfg(args)
    _make_synthetic_data(cfg, args.data)
    with _progress("eval") as bar:
        metrics = evaluate_checkpoint(cfg, args.checkpoint, args.data, backend=args.backend, device=args.device,
                                      val_data=args.val_data, images=args.images, problems=problems, progress=bar,
                                      test_cfg=_test_cfg_options(args))
    _warn_skipped(problems)
    print(metrics.summary())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(_metrics_json(metrics, args), indent=1))
        print(f"metrics written to {out}")
    return 0


def _metrics_json(metrics, args) -> dict:
    return {"config": str(args.config), "checkpoint": str(args.checkpoint), "backend": metrics.backend,
            "num_images": metrics.num_images, "num_detections": metrics.num_detections, "metrics": metrics.stats,
            "per_class_ap": {str(metrics.class_names.get(c, c)): None if ap != ap else ap  # NaN (no GT): null
                             for c, ap in metrics.per_class_ap.items()}}


def _run_export(args) -> int:
    from .io import check_output_path
    from .train.runner import export_checkpoint
    check_output_path(args.out, "file", "results")                              # before any work
    problems: list[str] = []
    cfg = _load_cfg(args)
    _make_synthetic_data(cfg, args.data)
    with _progress("export") as bar:
        n = export_checkpoint(cfg, args.checkpoint, args.out, args.data, device=args.device, val_data=args.val_data,
                              images=args.images, split=args.split, problems=problems, progress=bar,
                              test_cfg=_test_cfg_options(args))
    _warn_skipped(problems)
    print(f"wrote {n} detections to {args.out}")
    return 0


def main(argv=None) -> int:
    prog = "detengine" if Path(sys.argv[0]).name == "detengine" else "python -m detengine"  # the console script
    parser = argparse.ArgumentParser(prog=prog, description="DetScope's headless engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_inspect(sub)
    _add_train(sub)
    _add_eval_export(sub)
    _add_scan(sub)
    _add_fit_anchors(sub)
    cli_data.add_parsers(sub)
    args = parser.parse_args(argv)
    commands = {"inspect": _run_inspect, "train": _run_train, "eval": _run_eval, "export": _run_export,
                "scan": _run_scan, "fit-anchors": _run_fit_anchors, **cli_data.COMMANDS}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:  # bad config or input: a message
        print(f"error: {exc}", file=sys.stderr)
        return 2
