"""What a run folder holds for other tools besides ``log.jsonl``: TensorBoard event files,
``results.csv`` and PNG plots. Each is a subscriber of the run's :class:`~.events.EventBus`
(the one metrics store); the pictures that need predictions (validation images, PR curves,
confusion matrix) come from the validation itself through :meth:`RunOutputs.add_validation`.
Rank 0 only: the runner makes a :class:`RunOutputs` where it subscribes the JSONL log.

Costs: an iteration adds one TensorBoard event (all its scalars together) to the writer's queue
and a few sums; files are written at each epoch's end (``results.csv``), after a validation
(images), and at a stop, an error or the end (plots); SummaryWriter flushes on its own timer.
"""
from __future__ import annotations

import csv
import io
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from ..boxes import xywh_to_xyxy
from ..confusion import CONFUSION_IOU, CONFUSION_SCORE, confusion_matrix
from ..data import ImageReadError
from ..evaluation import COCO_METRIC_NAMES
from ..io import atomic_write_text

__all__ = ["RunOutputs", "TensorBoardLog", "ResultsCsv", "RunPlots", "ValidationPictures", "validation_pictures",
           "draw_detections", "RESULTS_CSV", "PLOT_FILES", "VAL_IMAGES"]

RESULTS_CSV = "results.csv"
PLOT_FILES = ("loss_curves.png", "ap_curves.png", "pr_curves.png", "confusion_matrix.png")
VAL_IMAGES = 4          # validation images drawn for TensorBoard at each validation
DRAW_MAX_SIDE = 512     # drawn images are shrunk to this longest side
GT_COLOUR = (0, 200, 0)
_FINAL = ("stop", "end", "error")


# --------------------------------------------------------------------------- the validation hand-off


@dataclass(frozen=True, repr=False)
class ValidationPictures:
    """What one validation leaves for the pictures, computed once on rank 0.

    ``epoch``: finished epochs when it ran; ``pr_curves``: class name -> (101,) precision at
    recall 0, 0.01, ..., 1 (IoU 0.5, area all, 100 detections; all -1 for a class without GT);
    ``confusion`` (C + 1, C + 1): :func:`~detengine.confusion.confusion_matrix` of all the val
    images; ``images``: the first few val images, RGB uint8 (H, W, 3), predictions and GTs drawn."""

    epoch: int
    class_names: tuple[str, ...]
    pr_curves: dict[str, np.ndarray]
    confusion: np.ndarray
    images: tuple[np.ndarray, ...]

    def __repr__(self) -> str:
        shapes = [tuple(im.shape) for im in self.images]
        return (f"ValidationPictures(epoch={self.epoch}, classes={len(self.class_names)}, "
                f"confusion={tuple(self.confusion.shape)}, images={shapes})")


def _predictions_per_image(results: list[dict], cat_to_label: dict[int, int]) -> dict[int, tuple]:
    """COCO results -> image id -> (boxes (D, 4) xyxy, labels (D,), scores (D,))."""
    grouped = defaultdict(list)
    for r in results:
        grouped[int(r["image_id"])].append(r)
    out = {}
    for image_id, rows in grouped.items():
        boxes_xywh = torch.tensor([r["bbox"] for r in rows], dtype=torch.float32).reshape(-1, 4)
        out[image_id] = (xywh_to_xyxy(boxes_xywh), torch.tensor([cat_to_label[int(r["category_id"])] for r in rows]),
                         torch.tensor([float(r["score"]) for r in rows]))
    return out


def _gts_per_image(coco: dict, cat_to_label: dict[int, int]) -> dict[int, tuple]:
    """A COCO dict's non-crowd boxes -> image id -> (boxes (G, 4) xyxy, labels (G,))."""
    grouped = defaultdict(list)
    for a in coco.get("annotations", []):
        if not a.get("iscrowd", 0) and int(a["category_id"]) in cat_to_label:
            grouped[int(a["image_id"])].append(a)
    return {image_id: (xywh_to_xyxy(torch.tensor([a["bbox"] for a in rows], dtype=torch.float32).reshape(-1, 4)),
                       torch.tensor([cat_to_label[int(a["category_id"])] for a in rows], dtype=torch.int64))
            for image_id, rows in grouped.items()}


def _class_colour(label: int) -> tuple[int, int, int]:
    """A bright RGB colour per class (golden-angle hues)."""
    hsv = np.uint8([[[int(label * 137.508) % 180, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_detections(image: np.ndarray, gt_boxes, gt_labels, boxes, labels, scores, class_names, *,
                    score_thr: float = CONFUSION_SCORE, max_side: int = DRAW_MAX_SIDE) -> np.ndarray:
    """A copy of ``image`` (RGB uint8 (H, W, 3), original pixels) shrunk to ``max_side``, with
    the GTs (gt_boxes (G, 4) xyxy: thin green) and the detections scoring at least
    ``score_thr`` (boxes (D, 4) xyxy: a colour per class, ``name score``) drawn."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    out = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    out = np.ascontiguousarray(out)
    for box in np.asarray(gt_boxes, np.float64).reshape(-1, 4) * scale:
        cv2.rectangle(out, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), GT_COLOUR, 1)
    for box, label, score in zip(np.asarray(boxes, np.float64).reshape(-1, 4) * scale, np.asarray(labels).tolist(),
                                 np.asarray(scores).tolist()):
        if score < score_thr:
            continue
        colour = _class_colour(int(label))
        x1, y1 = int(box[0]), int(box[1])
        cv2.rectangle(out, (x1, y1), (int(box[2]), int(box[3])), colour, 2)
        name = class_names[int(label)] if 0 <= int(label) < len(class_names) else str(label)
        cv2.putText(out, f"{name} {score:.2f}", (x1 + 2, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    return out


def _drawn_images(dataset, predictions: dict[int, tuple], num_images: int) -> tuple[np.ndarray, ...]:
    """The first ``num_images`` val images with their predictions and GTs (unreadable: skipped)."""
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))
    drawn = []
    for index in range(min(num_images, len(dataset))):
        try:
            sample = dataset.load_sample(index)
        except ImageReadError:
            continue
        boxes, labels, scores = predictions.get(int(sample.image_id), empty)
        drawn.append(draw_detections(sample.image, sample.boxes, sample.labels, boxes, labels, scores,
                                     list(dataset.class_names)))
    return tuple(drawn)


def validation_pictures(dataset, metrics, results: list[dict], label_to_cat: dict[int, int], epoch: int, *,
                        num_images: int = VAL_IMAGES) -> ValidationPictures:
    """The pictures of one validation: ``dataset`` (with ``coco``, ``class_names`` and
    ``load_sample``), its :class:`~detengine.evaluation.CocoMetrics`, the COCO ``results`` it
    scored, ``label_to_cat`` (model label -> category id of those results). GTs of images the
    evaluation skipped (unreadable) count as missed in the confusion matrix."""
    cat_to_label = {int(c): int(label) for label, c in label_to_cat.items()}
    names = tuple(str(n) for n in dataset.class_names)
    predictions = _predictions_per_image(results, cat_to_label)
    gts = _gts_per_image(dataset.coco.dataset, cat_to_label)
    no_pred = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    no_gt = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    matrix = confusion_matrix(((*predictions.get(i, no_pred), *gts.get(i, no_gt)) for i in set(predictions) | set(gts)),
                              len(names))
    curves = {name: np.asarray(metrics.pr_curves[label_to_cat[label]], np.float64)
              for label, name in enumerate(names) if label_to_cat.get(label) in metrics.pr_curves}
    return ValidationPictures(epoch, names, curves, matrix, _drawn_images(dataset, predictions, num_images))


# --------------------------------------------------------------------------- the subscribers


class TensorBoardLog:
    """TensorBoard event files in the run folder. Per iteration (step: the global step):
    ``train/loss``, ``train/<each loss term>``, ``train/lr``, ``train/grad_norm``. Per validation
    (step: the finished epochs, as mmengine's LoggerHook logs validation metrics by epoch):
    ``val/<COCO name>`` (AP, AP50, AP75, AP_small, ..., AR_large) and ``val_images/<k>``."""

    def __init__(self, run_dir, *, flush_secs: int = 30):
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter
        self._summary = Summary
        self.writer = SummaryWriter(log_dir=str(run_dir), max_queue=1000, flush_secs=flush_secs)

    def __call__(self, e: dict) -> None:
        kind = e["type"]
        if kind == "iter":
            values = {"train/loss": e["loss"], **{f"train/{k}": v for k, v in e["losses"].items()},
                      "train/lr": e["lr"]}
            if e.get("grad_norm") is not None:
                values["train/grad_norm"] = e["grad_norm"]
            values.update(e.get("assign") or {})          # assign/* at the logging interval
            self._scalars(values, e["global_step"], e["time"])
        elif kind == "eval":
            m = e["metrics"]
            self._scalars({f"val/{n}": m[n] for n in COCO_METRIC_NAMES if n in m}, e["epoch"] + 1, e["time"])
        elif kind in _FINAL:
            self.writer.flush()

    def _scalars(self, values: dict[str, float], step: int, walltime: float) -> None:
        """All of a step's scalars in one event: a quarter of ``add_scalar``'s cost, tag by tag."""
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(v))
                                       for tag, v in values.items()])
        self.writer._get_file_writer().add_summary(summary, step, walltime)

    def add_validation(self, pictures: ValidationPictures) -> None:
        for k, image in enumerate(pictures.images):
            self.writer.add_image(f"val_images/{k}", image, pictures.epoch, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _read_rows(path: Path) -> dict[int, dict[str, float]]:
    """The rows of an existing ``results.csv`` (a run resumed in its folder); unreadable: none."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {int(r["epoch"]): {k: float(v) for k, v in r.items() if k != "epoch" and v not in ("", None)}
                    for r in csv.DictReader(f)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _assign_order(name: str) -> tuple:
    """assign/* columns in :func:`~detengine.assign_stats.stat_names` order (levels by number)."""
    from ..assign_stats import stat_names
    fixed = stat_names(0)
    if name in fixed:
        return (0, fixed.index(name), 0)
    return (1, 0, int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 0)


class ResultsCsv:
    """``results.csv``, one row per epoch as Ultralytics users expect: ``epoch`` (from 1), the
    mean over the epoch's iterations of ``train/loss`` (the total) and of each ``train/<term>``,
    ``lr`` at its last iteration, and ``val/<COCO name>`` when a validation followed it (empty
    cells otherwise). The whole file is rewritten atomically at each epoch's end and after each
    validation; a stop, an error or the end writes the unfinished epoch's row from its
    iterations so far. Rows already in the file (a run resumed in its folder) are kept; an
    epoch seen again replaces its train cells."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows = _read_rows(self.path)
        self._epoch, self._count, self._lr = None, 0, float("nan")
        self._sums: dict[str, float] = {}
        self._assign: dict[str, list[float]] = {}      # assign/* of the epoch's logged iterations

    def __call__(self, e: dict) -> None:
        kind = e["type"]
        if kind == "iter":
            if e["epoch"] != self._epoch:
                self._epoch, self._count, self._sums, self._assign = e["epoch"], 0, {}, {}
            for key, value in (("loss", e["loss"]), *e["losses"].items()):
                self._sums[key] = self._sums.get(key, 0.0) + float(value)
            for key, value in (e.get("assign") or {}).items():
                self._assign.setdefault(key, []).append(float(value))
            self._count, self._lr = self._count + 1, float(e["lr"])
            if e.get("last_in_epoch"):
                self._close_epoch()
        elif kind == "eval":
            row = self.rows.setdefault(int(e["epoch"]) + 1, {})
            row.update({f"val/{n}": float(e["metrics"][n]) for n in COCO_METRIC_NAMES if n in e["metrics"]})
            self.write()
        elif kind in _FINAL:
            self.close()

    def _close_epoch(self) -> None:
        row = self.rows.setdefault(self._epoch + 1, {})
        row.update({f"train/{k}": s / self._count for k, s in self._sums.items()})
        row.update({k: sum(v) / len(v) for k, v in self._assign.items()})
        row["lr"] = self._lr
        self._count, self._sums, self._assign = 0, {}, {}
        self.write()

    def columns(self) -> list[str]:
        train = {"train/loss": None}
        for epoch in sorted(self.rows):
            train.update(dict.fromkeys(k for k in self.rows[epoch] if k.startswith("train/")))
        assign = dict.fromkeys(k for epoch in sorted(self.rows) for k in self.rows[epoch] if k.startswith("assign/"))
        return ["epoch", *train, "lr", *(f"val/{n}" for n in COCO_METRIC_NAMES), *sorted(assign, key=_assign_order)]

    def write(self) -> None:
        columns = self.columns()
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for epoch in sorted(self.rows):
            row = self.rows[epoch]
            writer.writerow([epoch, *("" if row.get(c) is None else repr(float(row[c])) for c in columns[1:])])
        atomic_write_text(self.path, text.getvalue())

    def close(self) -> None:
        if self._count:
            self._close_epoch()


class RunPlots:
    """PNG plots of what the run has seen, written at a stop, an error and the end (and by
    :meth:`close`): ``loss_curves.png`` (each loss term against the global step),
    ``ap_curves.png`` (AP and AP50 against the epoch), and from the last validation
    ``pr_curves.png`` (per class, IoU 0.5) and ``confusion_matrix.png``. A plot without data
    (no validation yet) is not written; one that fails does not keep the others from being."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.losses: dict[str, tuple[list[int], list[float]]] = {}
        self.evals: list[tuple[int, float, float]] = []        # (epoch, AP, AP50)
        self.pictures: ValidationPictures | None = None
        self._changed = False

    def __call__(self, e: dict) -> None:
        kind = e["type"]
        if kind == "iter":
            for key, value in (("loss", e["loss"]), *e["losses"].items()):
                steps, values = self.losses.setdefault(key, ([], []))
                steps.append(int(e["global_step"]))
                values.append(float(value))
            self._changed = True
        elif kind == "eval":
            m = e["metrics"]
            self.evals.append((int(e["epoch"]) + 1, float(m.get("AP", 0.0)), float(m.get("AP50", 0.0))))
            self._changed = True
        elif kind in _FINAL:
            self.write()

    def add_validation(self, pictures: ValidationPictures) -> None:
        self.pictures = pictures
        self._changed = True

    def _jobs(self) -> list[tuple[str, Callable]]:
        from . import plots
        jobs = []
        if self.losses:
            jobs.append(("loss_curves.png", lambda p: plots.plot_loss_curves(p, self.losses)))
        if self.evals:
            epochs, ap, ap50 = (list(c) for c in zip(*self.evals))
            jobs.append(("ap_curves.png", lambda p: plots.plot_ap_curves(p, epochs, ap, ap50)))
        if self.pictures is not None:
            v = self.pictures
            title = f"confusion matrix, epoch {v.epoch} (IoU > {CONFUSION_IOU}, score > {CONFUSION_SCORE})"
            jobs.append(("pr_curves.png", lambda p: plots.plot_pr_curves(p, v.pr_curves)))
            jobs.append(("confusion_matrix.png",
                         lambda p: plots.plot_confusion_matrix(p, v.confusion, list(v.class_names), title)))
        return jobs

    def write(self) -> list[Path]:
        """Write the plots (when something changed since the last time); returns their paths.
        Raises one error naming the plots that failed, after writing the others."""
        if not self._changed:
            return []
        self._changed = False
        written, failed = [], []
        for name, plot in self._jobs():
            try:
                written.append(plot(self.run_dir / name))
            except Exception as exc:  # the other plots are still worth having
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        if failed:
            raise RuntimeError(f"plots not written in {self.run_dir}: {'; '.join(failed)}")
        return written

    def close(self) -> None:
        self.write()


class RunOutputs:
    """The run folder's files for other tools: :class:`TensorBoardLog`, :class:`ResultsCsv` and
    :class:`RunPlots`, each its own subscriber of ``events`` (a failing one is dropped alone,
    as the bus does), plus the validation hand-off (:meth:`add_validation`). Rank 0 only."""

    def __init__(self, events, run_dir, *, tensorboard: bool = True):
        self.events = events
        run_dir = Path(run_dir)
        self.writers: list = [ResultsCsv(run_dir / RESULTS_CSV), RunPlots(run_dir)]
        if tensorboard:
            try:
                self.writers.insert(0, TensorBoardLog(run_dir))
            except Exception as exc:  # e.g. tensorboard missing: the run goes on without its event files
                self._warn(f"TensorBoard event files are not written: {type(exc).__name__}: {exc}")
        for writer in self.writers:
            events.subscribe(writer)

    def _warn(self, message: str) -> None:
        self.events.emit({"type": "warning", "kind": "run_outputs", "message": message})

    def add_validation(self, dataset, metrics, results: list[dict], label_to_cat: dict[int, int], epoch: int) -> None:
        """Hand the writers that draw the predictions of the validation that just ran (see
        :func:`validation_pictures`); a failure is a warning, never the end of the run."""
        try:
            pictures = validation_pictures(dataset, metrics, results, label_to_cat, epoch)
        except Exception as exc:
            self._warn(f"validation images, PR curves and confusion matrix not made: {type(exc).__name__}: {exc}")
            return
        for writer in [w for w in self.writers if hasattr(w, "add_validation")]:
            try:
                writer.add_validation(pictures)
            except Exception as exc:
                self.writers.remove(writer)
                self.events.unsubscribe(writer)
                self._warn(f"{type(writer).__name__} failed and was removed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Unsubscribe and close every writer (the unfinished epoch's row, the plots not yet
        written); errors are printed, never raised (this runs while another may be raised)."""
        for writer in self.writers:
            self.events.unsubscribe(writer)
            try:
                writer.close()
            except Exception as exc:
                print(f"detscope: closing {type(writer).__name__} failed: {exc}", file=sys.stderr)
        self.writers = []
