"""COCO evaluation (faster-coco-eval by default, pycocotools selectable), COCOeval's per-image
matches (what the window's image list counts as TP / FP / missed) and results export."""
from __future__ import annotations

import contextlib
import gc
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .io import atomic_write_text

__all__ = ["COCO_METRIC_NAMES", "CocoMetrics", "evaluate_coco", "detections_to_coco_results", "write_results",
           "BACKENDS", "ImageMatches", "coco_image_matches"]

COCO_METRIC_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                     "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
BACKENDS = ("faster-coco-eval", "pycocotools")
MATCH_IOU = 0.5            # the per-image matches: COCOeval's at IoU 0.5, area "all", 100 detections per class
_AREA_ALL = (0.0, 1e5 ** 2)
_MAX_DETS = 100


@dataclass
class CocoMetrics:
    """COCO's 12 standard numbers, per-class AP (by category id), and the PR curves (IoU 0.5)."""

    stats: dict[str, float]
    per_class_ap: dict[int, float]
    class_names: dict[int, str]
    backend: str
    num_images: int
    num_detections: int
    pr_curves: dict[int, list[float]] = field(default_factory=dict, repr=False)
    image_matches: dict[int, ImageMatches] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        lines = [f"COCO bbox ({self.backend}, {self.num_images} images, {self.num_detections} detections)"]
        lines += [f"  {name:<10} {self.stats[name]:.4f}" for name in COCO_METRIC_NAMES]
        lines.append("  per-class AP:")
        lines += [f"    {self.class_names.get(c, c)!s:<16} {ap:.4f}" for c, ap in self.per_class_ap.items()]
        return "\n".join(lines)


@dataclass(frozen=True)
class ImageMatches:
    """COCOeval's matching of one image's detections to its GT (``evalImgs``: ``dtMatches``,
    ``dtIgnore``, ``gtIgnore`` at IoU 0.5, area "all", maxDets 100), all classes together.

    ``scores`` (K,): the evaluated detections (each class's 100 best; the rest are outside COCO's
    evaluation, for the AP too); ``is_tp`` (K,) bool: matched to a regular GT; ``is_ignored`` (K,)
    bool: matched to a crowd GT (COCO's ``dtIgnore``), neither TP nor FP; ``matched_gt`` (K,) int:
    the GT each detection matched, an index into ``gt_ignored``, -1 for none; ``gt_ignored`` (G,)
    bool: crowd GTs, never missed.

    COCOeval matches detections greedily by descending score, so the matches of the detections
    above a threshold do not depend on those below it: :meth:`counts` at any threshold equals a
    new COCOeval run on the detections above it, without running it."""

    scores: np.ndarray
    is_tp: np.ndarray
    is_ignored: np.ndarray
    matched_gt: np.ndarray
    gt_ignored: np.ndarray
    dt_index: np.ndarray | None = None      # (K,) each detection's position in the results list evaluated
    gt_ids: np.ndarray | None = None        # (G,) the GT annotations' ids

    @classmethod
    def empty(cls, num_gt: int = 0, gt_ignored=None, gt_ids=None) -> ImageMatches:
        no = np.zeros(0, bool)
        ignored = np.zeros(num_gt, bool) if gt_ignored is None else np.asarray(gt_ignored, bool)
        ids = np.zeros(len(ignored), np.int64) if gt_ids is None else np.asarray(gt_ids, np.int64)
        return cls(np.zeros(0), no, no, np.zeros(0, np.int64), ignored, np.zeros(0, np.int64), ids)

    def outcome(self, score_thr: float = 0.0) -> tuple[dict[int, str], list[int]]:
        """What COCOeval made of each detection scoring >= ``score_thr``: ``{results index: "tp" |
        "fp" | "ignored"}`` (a detection outside COCO's 100 per class is not in it), and the ids
        of the GTs no such detection found (crowd GTs are never missed)."""
        kept = self.scores >= score_thr
        status = np.where(self.is_tp, "tp", np.where(self.is_ignored, "ignored", "fp"))
        found = np.zeros(len(self.gt_ignored), bool)
        found[self.matched_gt[kept & self.is_tp]] = True
        missed = self.gt_ids[~found & ~self.gt_ignored]
        return ({int(i): str(st) for i, st, k in zip(self.dt_index, status, kept, strict=True) if k},
                [int(g) for g in missed])

    def counts(self, score_thr: float = 0.0) -> tuple[int, int, int]:
        """(TP, FP, missed GT) of the detections scoring >= ``score_thr``."""
        kept = self.scores >= score_thr
        tp = kept & self.is_tp
        fp = kept & ~self.is_tp & ~self.is_ignored
        found = np.zeros(len(self.gt_ignored), bool)
        found[self.matched_gt[tp]] = True
        return int(tp.sum()), int(fp.sum()), int((~found & ~self.gt_ignored).sum())

    def __repr__(self) -> str:
        return f"ImageMatches(detections={len(self.scores)}, gts={len(self.gt_ignored)})"


def _coco_classes(backend: str):
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster
        return COCO, COCOeval_faster
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def _load_gt(COCO, gt):
    """A COCO object of the backend from a path, a dict, or another library's COCO object."""
    if isinstance(gt, str):
        with open(gt) as f:
            gt = json.load(f)
    elif not isinstance(gt, dict):
        gt = gt.dataset
    coco = COCO()
    # COCOeval marks the GT annotations (``ignore``): fresh annotation dicts keep the caller's clean,
    # without a deep copy of everything (2x the evaluation itself on 20k detections)
    coco.dataset = {**gt, "annotations": [dict(a) for a in gt.get("annotations", [])]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@contextlib.contextmanager
def _collector_paused():
    """The evaluation allocates ~100k short-lived objects (acyclic): with the collector running,
    each gen-2 pass also walks everything the caller holds (25% of the time on 20k detections)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def evaluate_coco(gt, results: list[dict], *, backend: str = "faster-coco-eval", image_ids=None,
                  matches: bool = False) -> CocoMetrics:
    """Evaluate COCO results (``image_id, category_id, bbox [x, y, w, h], score``) against ``gt``
    (a COCO JSON path, dict or COCO object), restricted to ``image_ids`` when given. ``matches``:
    also COCOeval's per-image matches (:class:`ImageMatches`, in ``image_matches``)."""
    COCO, COCOeval = _coco_classes(backend)
    coco_gt = _load_gt(COCO, gt)
    ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
    cat_ids = sorted(coco_gt.getCatIds())
    names = {c: coco_gt.cats[c]["name"] for c in cat_ids}
    if not results:
        zeros = {n: 0.0 for n in COCO_METRIC_NAMES}
        found = coco_image_matches(coco_gt.dataset, [], ids) if matches else {}
        return CocoMetrics(zeros, {c: 0.0 for c in cat_ids}, names, backend, len(ids), 0, image_matches=found)
    with contextlib.redirect_stdout(io.StringIO()), _collector_paused():
        coco_dt = coco_gt.loadRes([dict(r) for r in results])   # loadRes adds keys to each, reads bbox
        ev = COCOeval(coco_gt, coco_dt, "bbox") if backend == "pycocotools" else \
            COCOeval(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {n: float(v) for n, v in zip(COCO_METRIC_NAMES, ev.stats[:12])}
    per_class, curves = _per_class(ev.eval["precision"], ev.params.catIds)
    found = {}
    if matches:  # pycocotools keeps its evalImgs; faster-coco-eval's stay in C++: the same matching, in numpy
        found = _matches_from_eval_imgs(ev, ids) if backend == "pycocotools" else \
            coco_image_matches(coco_gt.dataset, results, ids)
    return CocoMetrics(stats, per_class, names, backend, len(ids), len(results), curves, found)


def _per_class(precision: np.ndarray, cat_ids) -> tuple[dict[int, float], dict[int, list[float]]]:
    """precision (T, R, K, A, M): AP per class at all areas, 100 detections; PR curve at IoU 0.5."""
    per_class, curves = {}, {}
    for k, cat in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        per_class[int(cat)] = float(valid.mean()) if valid.size else float("nan")
        curves[int(cat)] = [float(v) for v in precision[0, :, k, 0, -1]]
    return per_class, curves


def detections_to_coco_results(detections, label_to_cat_id: dict[int, int]) -> list[dict]:
    """COCO results from :class:`~detengine.models.Detections` (boxes in original pixels)."""
    out = []
    for det in detections:
        image_id = int(det.meta["image_id"])
        boxes = det.boxes.detach().cpu().float()
        for box, score, label in zip(boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            x1, y1, x2, y2 = box
            out.append({"image_id": image_id, "category_id": int(label_to_cat_id[int(label)]),
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(float(score), 5)})
    return out


def write_results(path, results: list[dict]) -> None:
    """Atomically write COCO results JSON (what ``COCO.loadRes`` reads)."""
    atomic_write_text(path, json.dumps(results))


# --------------------------------------------------------------------------- per-image matches


def _concat_matches(parts: list[ImageMatches]) -> ImageMatches:
    """One image's matches from its per-class parts (GT indices shifted past the earlier parts)."""
    if not parts:
        return ImageMatches.empty()
    offsets = np.cumsum([0] + [len(p.gt_ignored) for p in parts[:-1]])
    matched = [np.where(p.matched_gt >= 0, p.matched_gt + off, -1) for p, off in zip(parts, offsets)]
    return ImageMatches(np.concatenate([p.scores for p in parts]), np.concatenate([p.is_tp for p in parts]),
                        np.concatenate([p.is_ignored for p in parts]), np.concatenate(matched).astype(np.int64),
                        np.concatenate([p.gt_ignored for p in parts]),
                        np.concatenate([p.dt_index for p in parts]).astype(np.int64),
                        np.concatenate([p.gt_ids for p in parts]).astype(np.int64))


def _matches_from_eval_imgs(ev, image_ids) -> dict[int, ImageMatches]:
    """pycocotools' own ``evalImgs`` (one per image, class, area range) at IoU 0.5, area "all"."""
    t = int(np.flatnonzero(np.isclose(ev.params.iouThrs, MATCH_IOU))[0])
    parts: dict[int, list[ImageMatches]] = defaultdict(list)
    for e in ev.evalImgs:
        if e is None or tuple(e["aRng"]) != _AREA_ALL or e["maxDet"] != _MAX_DETS:
            continue
        gt_index = {int(g): k for k, g in enumerate(e["gtIds"])}
        dt_matches, dt_ignored = np.asarray(e["dtMatches"])[t], np.asarray(e["dtIgnore"], bool)[t]
        matched = np.array([gt_index.get(int(m), -1) for m in dt_matches], np.int64)
        parts[int(e["image_id"])].append(ImageMatches(     # loadRes numbered the results 1.. in list order
            np.asarray(e["dtScores"], np.float64), (matched >= 0) & ~dt_ignored, dt_ignored, matched,
            np.asarray(e["gtIgnore"], bool), np.asarray(e["dtIds"], np.int64) - 1, np.asarray(e["gtIds"], np.int64)))
    return {int(i): _concat_matches(parts.get(int(i), [])) for i in image_ids}


def coco_image_matches(gt: dict, results: list[dict], image_ids=None) -> dict[int, ImageMatches]:
    """COCOeval's per-image matches of ``results`` against the COCO dict ``gt`` (IoU 0.5, area
    "all", 100 detections per class), computed as pycocotools' ``evaluateImg`` does, for the
    backends that do not expose ``evalImgs`` (faster-coco-eval). ``image_ids``: default all."""
    ids = sorted(im["id"] for im in gt["images"]) if image_ids is None else [int(i) for i in image_ids]
    wanted, cats = set(ids), {c["id"] for c in gt["categories"]}
    gts, dts = defaultdict(list), defaultdict(list)        # (image id, category id) -> annotations, in file order
    for a in gt["annotations"]:
        if a["image_id"] in wanted and a["category_id"] in cats:
            gts[a["image_id"], a["category_id"]].append(a)
    for k, r in enumerate(results):
        if r["image_id"] in wanted and r["category_id"] in cats:
            dts[r["image_id"], r["category_id"]].append((k, r))
    parts: dict[int, list[ImageMatches]] = defaultdict(list)
    for key in sorted(set(gts) | set(dts), key=lambda k: (k[1], k[0])):
        parts[key[0]].append(_match_per_class(gts.get(key, []), dts.get(key, [])))
    return {i: _concat_matches(parts.get(i, [])) for i in ids}


def _bbox_iou_coco(dt_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU as pycocotools' ``bbIou``: xywh boxes, float64, a crowd GT's union is the
    detection's own area. dt_xywh (D, 4), gt_xywh (G, 4), crowd (G,) bool."""
    d, g = dt_xywh[:, None, :], gt_xywh[None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    dt_area, gt_area = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    union = np.where(crowd[None, :], dt_area, dt_area + gt_area - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def _match_per_class(gt_anns: list[dict], indexed_dts: list[tuple[int, dict]]) -> ImageMatches:
    """pycocotools' ``evaluateImg`` for one image and class at IoU 0.5, area "all", maxDets 100:
    GTs sorted regular first, detections by descending score (stable); each detection takes the
    best-IoU free regular GT, else a crowd GT (which any number may share)."""
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in gt_anns], bool)
    area = np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in gt_anns], np.float64)
    gt_order = np.argsort(crowd | (area < _AREA_ALL[0]) | (area > _AREA_ALL[1]), kind="mergesort")
    gt_anns, crowd = [gt_anns[k] for k in gt_order], crowd[gt_order]
    ignored = crowd | (area[gt_order] < _AREA_ALL[0]) | (area[gt_order] > _AREA_ALL[1])
    gt_ids = np.array([a.get("id", -1) for a in gt_anns], np.int64)
    dt_order = np.argsort([-d["score"] for _, d in indexed_dts], kind="mergesort")[:_MAX_DETS]
    dt_index = np.array([indexed_dts[k][0] for k in dt_order], np.int64)
    dt_anns = [indexed_dts[k][1] for k in dt_order]
    if not dt_anns:
        return ImageMatches.empty(len(gt_anns), ignored, gt_ids)
    scores = np.array([d["score"] for d in dt_anns], np.float64)
    dt_xywh = np.array([d["bbox"] for d in dt_anns], np.float64).reshape(-1, 4)
    gt_xywh = np.array([a["bbox"] for a in gt_anns], np.float64).reshape(-1, 4)
    matched = _greedy_coco(_bbox_iou_coco(dt_xywh, gt_xywh, crowd), crowd, ignored)
    hit = matched >= 0
    is_ignored = (dt_xywh[:, 2] * dt_xywh[:, 3] < _AREA_ALL[0]) | (dt_xywh[:, 2] * dt_xywh[:, 3] > _AREA_ALL[1])
    is_ignored[hit] = ignored[matched[hit]]           # matched: the GT's flag; unmatched: outside the area range
    return ImageMatches(scores, hit & ~is_ignored, is_ignored, matched, ignored, dt_index, gt_ids)


def _greedy_coco(iou: np.ndarray, crowd: np.ndarray, ignored: np.ndarray) -> np.ndarray:
    """evaluateImg's loop at one threshold: iou (D, G), detections by score, GTs regular first.
    Returns the matched GT per detection (D,), -1 for none. Among equal IoUs the LAST GT wins and
    the threshold is inclusive, as in pycocotools (``if ious < iou: continue``)."""
    matched = np.full(len(iou), -1, np.int64)
    taken = np.zeros(iou.shape[1], bool)
    thr = min(MATCH_IOU, 1 - 1e-10)
    for d in range(len(iou)):
        free = (~taken | crowd) & (iou[d] >= thr)
        for group in (free & ~ignored, free & ignored):    # a regular GT first, else an ignored one
            if group.any():
                best = np.flatnonzero(group & (iou[d] == iou[d][group].max()))[-1]
                matched[d], taken[best] = best, True
                break
    return matched
