"""Predict and evaluate on the images of an annotation project (the window's evaluation),
with the same pipeline and COCO evaluation as ``python -m detengine eval``."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .boxes import bbox_overlaps
from .data.collate import collate
from .data.folder import ImageReadError, read_image
from .evaluation import CocoMetrics, detections_to_coco_results, evaluate_coco

__all__ = ["LoadedModel", "load_model", "EvalResult", "project_gt", "evaluate_project", "predict_images", "evaluate_predictions", "match_detections", "ImagePredictions", "class_map",
           "LabelMap", "model_label_map",
           "checkpoint_class_names", "per_image_counts"]


class ImagePredictions:
    """Detections of one image in ORIGINAL pixels: ``boxes`` (K, 4) xyxy, ``scores``, ``labels``
    (contiguous), sorted by score."""

    def __init__(self, boxes, scores, labels):
        self.boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.scores = np.asarray(scores, np.float64).reshape(-1)
        self.labels = np.asarray(labels, np.int64).reshape(-1)


def match_detections(boxes, scores, labels, gt_boxes, gt_labels, iou_thr: float = 0.5):
    """COCO-style greedy matching of one traced image (the NMS view): detections by descending
    score take the unmatched GT of their class with the highest IoU >= ``iou_thr``; no crowd rule,
    no 100-detection cap (the evaluation's counts use COCOeval's own: :func:`per_image_counts`).
    Returns (tp (K,) bool, matched GT (K,) or -1, missed GT indices)."""
    boxes, gt_boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), \
        torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    scores, labels = torch.as_tensor(scores).reshape(-1), torch.as_tensor(labels).reshape(-1)
    gt_labels = torch.as_tensor(gt_labels).reshape(-1)
    k, g = len(boxes), len(gt_boxes)
    tp = torch.zeros(k, dtype=torch.bool)
    matched = torch.full((k,), -1, dtype=torch.long)
    taken = torch.zeros(g, dtype=torch.bool)
    if k and g:
        iou = bbox_overlaps(boxes, gt_boxes)
        for d in torch.argsort(scores, descending=True, stable=True).tolist():
            ok = (gt_labels == labels[d]) & ~taken & (iou[d] >= iou_thr)
            if ok.any():
                j = int(torch.where(ok, iou[d], torch.tensor(-1.0)).argmax())
                tp[d], matched[d], taken[j] = True, j, True
    return tp, matched, (~taken).nonzero().view(-1).tolist()


@torch.no_grad()
def predict_images(model, test_pipeline, items, *, size_divisor=None, batch_size: int = 4, progress=None,
                   cancel=None, **overrides) -> tuple[dict, list[str]]:
    """``items``: [(key, image path)]. Returns ({key: ImagePredictions}, problems) — an unreadable
    image is listed in problems, not fatal."""
    device = next(model.parameters()).device
    model.eval()
    out, problems = {}, []
    for start in range(0, len(items), batch_size):
        if cancel is not None and cancel.is_set():
            break
        samples, keys = [], []
        for key, path in items[start:start + batch_size]:
            try:
                image = read_image(path)
            except ImageReadError as exc:
                problems.append(str(exc))
                continue
            h, w = image.shape[:2]
            samples.append(test_pipeline({"image": image, "boxes": np.zeros((0, 4), np.float32),
                                          "labels": np.zeros(0, np.int64), "ignore_boxes": np.zeros((0, 4), np.float32),
                                          "meta": {"ori_shape": (h, w), "img_shape": (h, w), "homography": np.eye(3)}}))
            keys.append(key)
        if samples:
            batch = collate(samples, size_divisor=size_divisor)
            batch["images"] = batch["images"].to(device)
            for key, det in zip(keys, model.predict(batch, record=False, **overrides)):
                out[key] = ImagePredictions(det.boxes.cpu().numpy(), det.scores.cpu().numpy(), det.labels.cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, len(items)), len(items))
    return out, problems


def per_image_counts(matches: dict, score_thr: float = 0.0) -> dict[int, tuple[int, int, int]]:
    """Per image id: (TP, FP, missed GT) of the detections scoring >= ``score_thr``, from
    COCOeval's own matches (``matches``: {image id: :class:`~detengine.evaluation.ImageMatches`},
    IoU 0.5, area "all", 100 detections per class), so they agree with the AP beside them: a
    detection on a crowd box is neither TP nor FP, a crowd box is never missed. Cheap: the
    slider recounts without evaluating again."""
    return {image_id: m.counts(score_thr) for image_id, m in matches.items()}


def evaluate_predictions(gt: dict, predictions: dict, label_to_cat_id: dict[int, int], *,
                         backend: str = "faster-coco-eval", score_thr: float = 0.0) -> tuple[CocoMetrics, dict, list[dict]]:
    """COCO metrics of ``predictions`` ({image id: ImagePredictions}) against the COCO dict ``gt``
    (with COCOeval's per-image matches, ``metrics.image_matches``), per-image ``(tp, fp, missed)``
    at ``score_thr`` (:func:`per_image_counts`), and the COCO results list (for export)."""

    class _Det:                                   # what detections_to_coco_results reads
        def __init__(self, image_id, p):
            self.boxes, self.scores, self.labels = torch.as_tensor(p.boxes), torch.as_tensor(p.scores), \
                torch.as_tensor(p.labels)
            self.meta = {"image_id": image_id}

    dets = [_Det(i, p) for i, p in predictions.items()]
    results = detections_to_coco_results(dets, label_to_cat_id)
    metrics = evaluate_coco(gt, results, backend=backend, image_ids=list(predictions), matches=True)
    return metrics, per_image_counts(metrics.image_matches, score_thr), results


@dataclass(frozen=True)
class LabelMap:
    """How a model's labels meet a project's categories: the one place project boxes become
    model labels (debug views, dataset scan, evaluation). ``label_to_cat`` / ``cat_to_label``
    map both ways, ``class_names`` name each model label, ``problems`` list the names only one
    side has (their boxes / detections are left out)."""

    label_to_cat: dict[int, int]
    cat_to_label: dict[int, int]
    class_names: list[str]
    problems: list[str]

    @property
    def num_classes(self) -> int:
        return max(1, len(self.class_names))

    def encode(self, category_ids) -> tuple[list[int], list[int]]:
        """``(kept positions, labels)`` of boxes with these category ids: a box of a category the
        model does not know is left out."""
        kept = [k for k, c in enumerate(category_ids) if c in self.cat_to_label]
        return kept, [self.cat_to_label[category_ids[k]] for k in kept]

    def name(self, label: int) -> str:
        """The label's class name; a model class the project lacks says so."""
        if not 0 <= label < len(self.class_names):
            return f"model class {label}"
        return self.class_names[label] + ("" if label in self.label_to_cat else " (not in the project)")


def class_map(model_class_names: list[str] | None, categories) -> LabelMap:
    """The :class:`LabelMap` of a model trained with ``model_class_names`` (label order: a
    checkpoint's classes) on a project with ``categories``; None means a model made for this
    project (labels = categories sorted by id, as the trainer makes them). Names meet by name."""
    cats = sorted(categories, key=lambda c: c.id)
    if model_class_names is None:
        label_to_cat = {i: c.id for i, c in enumerate(cats)}
        return LabelMap(label_to_cat, {c: i for i, c in label_to_cat.items()}, [c.name for c in cats], [])
    by_name = {c.name: c.id for c in cats}
    label_to_cat = {i: by_name[n] for i, n in enumerate(model_class_names) if n in by_name}
    problems = [f"the model's class {n!r} is not a class of the project" for n in model_class_names if n not in by_name]
    known = set(model_class_names)
    problems += [f"class {c.name!r} is unknown to the model (its boxes are left out)" for c in cats
                 if c.name not in known]
    return LabelMap(label_to_cat, {c: i for i, c in label_to_cat.items()}, list(model_class_names), problems)


def model_label_map(checkpoint, categories) -> LabelMap:
    """:func:`class_map` of ``checkpoint``'s class names (None / no names: made for the project)."""
    return class_map(checkpoint_class_names(checkpoint) if checkpoint else None, categories)


def checkpoint_class_names(checkpoint) -> list[str] | None:
    """The class names a checkpoint was trained with, in label order: its ``meta["classes"]``
    (saved by the trainer) or ``meta["dataset_meta"]["classes"]`` (mmdetection), else
    ``classes.txt`` beside it (older runs), else None. Read once per file version (the debug
    views ask on every trace)."""
    path = Path(checkpoint)
    try:
        stat = path.stat()
    except OSError:
        return None
    names = _checkpoint_class_names(str(path), stat.st_mtime_ns, stat.st_size)
    return list(names) if names is not None else None


@functools.lru_cache(maxsize=16)
def _checkpoint_class_names(path: str, _mtime_ns: int, _size: int) -> tuple[str, ...] | None:
    try:  # memory-mapped: only the small meta entry is read, not the weights
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        meta = (ckpt.get("meta") or {}) if isinstance(ckpt, dict) else {}
        # ours: meta["classes"]; an mmdetection 3.x checkpoint: meta["dataset_meta"]["classes"]
        names = meta.get("classes") or (meta.get("dataset_meta") or {}).get("classes")
        if names:
            return tuple(str(n) for n in names)
    except Exception:  # unreadable here: the model loader reports it with its own message
        pass
    txt = Path(path).with_name("classes.txt")
    if not txt.is_file():
        return None
    return tuple(line.strip() for line in txt.read_text(encoding="utf-8").splitlines() if line.strip())


@dataclass(frozen=True)
class LoadedModel:
    """A detector ready to trace: ``model``, a ``name`` for the window (``random init (seed 0)``,
    ``checkpoint best.pth``) and the ``num_classes`` its head predicts."""

    model: torch.nn.Module
    name: str
    num_classes: int


def load_model(cfg: dict, num_classes: int, checkpoint: str | None = None, *, seed: int = 0) -> LoadedModel:
    """The detector of config ``cfg`` (a full config dict): from ``checkpoint`` (DetScope's or
    mmdetection's; its class count from the checkpoint's classes), else a seeded random
    initialisation with ``num_classes`` classes."""
    from .config import merge_dicts
    from .image_trace import num_classes_override
    from .models.builder import build_detector
    if checkpoint:
        from .train.checkpoint import load_checkpoint, load_state_checked
        ckpt = load_checkpoint(checkpoint)
        names = checkpoint_class_names(checkpoint)  # an mmdetection checkpoint: its dataset's classes
        model_cfg = ckpt.get("model_cfg") or merge_dicts(cfg["model"], num_classes_override(len(names) if names
                                                                                             else num_classes))
        model = build_detector(model_cfg)
        load_state_checked(model, ckpt.get("model", ckpt.get("state_dict", ckpt)), checkpoint)
        return LoadedModel(model, f"checkpoint {Path(checkpoint).name}", int(model_cfg["bbox_head"]["num_classes"]))
    torch.manual_seed(seed)
    model = build_detector(merge_dicts(cfg["model"], num_classes_override(num_classes)))
    return LoadedModel(model, f"random init (seed {seed})", num_classes)


@dataclass
class EvalResult:
    """An evaluation of a model on some images of a project: COCO ``metrics`` (with COCOeval's
    per-image matches, ``metrics.image_matches``), per image TP / FP / missed counts at the score
    threshold asked (``per_image``), the COCO ``results`` list, the raw ``predictions`` per image id,
    the ``problems`` met (unreadable images, classes only one side has), the ``model``'s name,
    ``label_to_cat`` (model label -> project category id) and the ground truth ``gt`` (COCO dict)."""

    metrics: CocoMetrics
    per_image: dict
    results: list
    predictions: dict
    problems: list[str]
    model: str
    label_to_cat: dict[int, int]
    gt: dict

    def outcome(self, image_id: int, score_thr: float = 0.0) -> tuple[list[str | None], list[int]]:
        """What COCOeval made of image ``image_id``'s predictions (``predictions[image_id]``, in
        their order) that score >= ``score_thr``: "tp", "fp", "ignored" (on a crowd box), or None
        (below the threshold, or beyond COCO's 100 per class: not evaluated); and the ids of its
        GT boxes that none of them found. The same matches as the AP and the per-image counts."""
        first = 0
        for i, p in self.predictions.items():     # the results list holds each image's predictions in turn
            if i == image_id:
                break
            first += len(p.scores)
        p = self.predictions.get(image_id)
        matches = self.metrics.image_matches.get(image_id)
        if p is None or matches is None:
            return [], []
        status, missed = matches.outcome(score_thr)
        return [status.get(first + k) for k in range(len(p.scores))], missed


def project_gt(project, indices: list[int]) -> tuple[list[tuple[int, str]], dict]:
    """What an evaluation of ``indices`` needs from a project, taken on the caller's thread:
    ``[(image id, path)]`` and the COCO dict of just those images."""
    items = [(project.images[i].id, str(project.image_path(i))) for i in indices]
    gt = project.to_coco()
    keep = {project.images[i].id for i in indices}
    gt["images"] = [im for im in gt["images"] if im["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    return items, gt


def evaluate_project(items, gt: dict, cfg: dict, categories, *, checkpoint: str | None = None,
                     score_thr: float = 0.0, progress=None, cancel=None) -> EvalResult:
    """Predict ``items`` (``[(image id, path)]``) with the config's model (``checkpoint``'s, else a
    seeded random initialisation) through its test pipeline, then COCO-evaluate against ``gt``.
    Detections of classes the project does not have are left out; the model's labels meet the
    project's categories by name (:class:`LabelMap`)."""
    from .image_trace import ImageTracer
    loaded = load_model(cfg, max(1, len(categories)), checkpoint)
    tracer = ImageTracer({**cfg, "model": loaded.model.model_cfg})
    labels = model_label_map(checkpoint, categories)
    label_to_cat = labels.label_to_cat
    preds, problems = predict_images(loaded.model, tracer.test_pipeline, items, size_divisor=tracer.size_divisor,
                                     progress=progress, cancel=cancel)
    for p in preds.values():
        keep = np.isin(p.labels, list(label_to_cat))
        p.boxes, p.scores, p.labels = p.boxes[keep], p.scores[keep], p.labels[keep]
    metrics, per_image, results = evaluate_predictions(gt, preds, label_to_cat, score_thr=score_thr)
    return EvalResult(metrics, per_image, results, preds, problems + labels.problems, loaded.name, label_to_cat, gt)
