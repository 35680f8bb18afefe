"""Benchmark: dense post-processing with the full suppression record vs torchvision's SSD.

* ``ssd300``: random-initialised-like SSD300 outputs (near-uniform softmax over 81 columns plus
  seeded logit noise, tuned so that about 48,000 (prior, class) pairs score above 0.02; the actual
  count is printed). Ours: ``core.predict`` (mmdetection's ``_predict_by_feat_single`` +
  ``_bbox_post_process``: per level score_thr, top nms_pre, decode, per-class NMS, max_per_img)
  which also records every candidate's stage and its suppressor. Theirs:
  ``torchvision SSD.postprocess_detections`` on the same tensors (background column moved to the
  front, our priors as its anchors; its BoxCoder weights 10,10,5,5 equal our stds .1,.1,.2,.2).
  torchvision's parameters are set to ours as far as it allows; it has no per-level ``nms_pre``
  (its ``topk_candidates`` is per class), so a second torchvision row uses topk_candidates=75
  (80 x 75 = 6,000 = our 6 levels x nms_pre 1000) for a like-for-like candidate count.
* ``retinanet640``: our ``core.predict`` alone for RetinaNet at 640x640 (76725 anchors), on two
  inputs: seeded N(0, 1) sigmoid logits (``random_predictions``: almost every one of the 6.1M
  pairs is above score_thr 0.05, the worst case) and init-like logits (RetinaNet's -4.595 prior
  bias plus noise tuned to ~48,000 pairs above 0.05).

Implementations are interleaved (rotating order) after a warm-up; run with 1 and 2 torch threads
(``--threads 1 2 2busy`` adds 2 threads while a busy-loop process holds one core).

Run from the repository root:  .venv/bin/python bench/bench_postprocess.py [--reps N] [--threads ...] [--profile]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_trace import _yes, header, pct, profile_ours, run_interleaved, thread_config  # noqa: E402
from torchvision.models.detection import ssd300_vgg16  # noqa: E402

from detengine.trace import head_core_for, model_config, random_predictions  # noqa: E402

CONFIGS = ROOT / "resources" / "configs"
TARGET_CANDIDATES = 48_000
SCORE_THR = 0.02


def init_like_logits(num_priors: int, channels: int, target: int, thr: float, seed: int = 0):
    """``sigma * z`` with z ~ N(0, 1) seeded, sigma found by bisection so that about ``target``
    foreground pairs have softmax score > ``thr`` (an untrained head: near-uniform scores)."""
    z = torch.randn(num_priors, channels, generator=torch.Generator().manual_seed(seed))

    def count(sigma):
        return int(((z * sigma).softmax(-1)[:, :-1] > thr).sum())

    lo, hi = 0.0, 0.8  # count rises with sigma on this interval
    for _ in range(40):
        mid = (lo + hi) / 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
    return z * hi, hi, count(hi)


def ssd300_case():
    model = model_config(CONFIGS / "ssd300_coco.py")
    core = head_core_for(model)
    priors = core.priors((300, 300))
    _, reg = random_predictions(core, priors, seed=0)
    cls, sigma, n_above = init_like_logits(len(priors), core.cls_channels(), TARGET_CANDIDATES, SCORE_THR)
    ours_cfg = core.test_config()

    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
    tv.eval()
    tv_default = dict(score_thresh=tv.score_thresh, nms_thresh=tv.nms_thresh,
                      detections_per_img=tv.detections_per_img, topk_candidates=tv.topk_candidates)
    tv.score_thresh = ours_cfg["score_thr"]
    tv.nms_thresh = ours_cfg["iou_threshold"]
    tv.detections_per_img = ours_cfg["max_per_img"]
    tv.topk_candidates = 400  # per class; no per-level equivalent of nms_pre
    head_outputs = {"bbox_regression": reg[None].contiguous(),
                    "cls_logits": torch.cat([cls[:, -1:], cls[:, :-1]], 1)[None].contiguous()}  # bg first
    anchors = [priors.tensor]
    shapes = [(300, 300)]

    def theirs(topk):
        tv.topk_candidates = topk
        return tv.postprocess_detections(head_outputs, anchors, shapes)[0]

    fns = {
        "ours core.predict (+ suppression record)": lambda: core.predict(cls, reg, priors, (300, 300)),
        "torchvision postprocess_detections topk=400": lambda: theirs(400),
        "torchvision postprocess_detections topk=75": lambda: theirs(75),
    }
    res = fns["ours core.predict (+ suppression record)"]()
    det400, det75 = theirs(400), theirs(75)
    tv.topk_candidates = 400

    def overlap(det):
        a = {(int(l), round(float(s), 6)) for l, s in zip(res.labels, res.scores)}
        b = {(int(l) - 1, round(float(s), 6)) for l, s in zip(det["labels"], det["scores"])}
        return len(a & b)

    tv_cands = int(sum(min(400, int((head_outputs["cls_logits"][0].softmax(-1)[:, c] > tv.score_thresh).sum()))
                       for c in range(1, 81)))
    sanity = {
        "logit noise": f"sigma = {sigma:.4f} -> {n_above} (prior, class) pairs above {SCORE_THR} "
                       f"(target ~{TARGET_CANDIDATES}) of {len(priors) * 80}",
        "ours config": str(ours_cfg),
        "torchvision defaults": str(tv_default),
        "torchvision as run": f"score_thresh={tv.score_thresh}, nms_thresh={tv.nms_thresh}, "
                              f"detections_per_img={tv.detections_per_img}, topk_candidates=400 (and 75) per class",
        "ours counts": str(res.counts),
        "ours record": f"{int((res.suppressed_by >= 0).sum())} candidates with a suppressor, "
                       f"raw_stage {tuple(res.raw_stage.shape)}, stages "
                       f"{torch.bincount(res.cand_stage.long(), minlength=6).tolist()}",
        "torchvision NMS input": f"{tv_cands} candidates (topk=400), {min(tv_cands, 80 * 75)} max (topk=75)",
        "detections": f"ours {len(res.scores)}, tv(400) {len(det400['scores'])}, tv(75) {len(det75['scores'])}; "
                      f"same (label, score) as ours: tv(400) {overlap(det400)}, tv(75) {overlap(det75)}",
        "top score": f"ours {float(res.scores[0]):.6f}, tv {float(det400['scores'][0]):.6f}",
    }
    return dict(name="ssd300", fns=fns, headline=("ours core.predict (+ suppression record)",
                                                  "torchvision postprocess_detections topk=400"),
                sanity=sanity, target_ms=60.0,
                inputs=dict(core=core, priors=priors, cls=cls, reg=reg, shape=(300, 300), result=res))


def init_like_sigmoid_logits(num_priors: int, channels: int, target: int, thr: float, seed: int = 0):
    """RetinaNet's prior-probability bias (-4.595, p = 0.01) plus ``sigma * z``, sigma found by
    bisection so that about ``target`` pairs have sigmoid score > ``thr``."""
    z = torch.randn(num_priors, channels, generator=torch.Generator().manual_seed(seed))
    bias = -4.59511985013459

    def count(sigma):
        return int(((bias + z * sigma).sigmoid() > thr).sum())

    lo, hi = 0.0, 3.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return bias + z * hi, hi, count(hi)


def retinanet640_case():
    model = model_config(CONFIGS / "retinanet_r50_fpn_coco.py")
    core = head_core_for(model)
    priors = core.priors((640, 640))
    cls, reg = random_predictions(core, priors, seed=0)
    thr = core.test_config()["score_thr"]
    cls_init, sigma, n_init = init_like_sigmoid_logits(len(priors), core.cls_channels(), TARGET_CANDIDATES, thr)
    fns = {"ours core.predict, N(0,1) logits": lambda: core.predict(cls, reg, priors, (640, 640)),
           "ours core.predict, init-like logits": lambda: core.predict(cls_init, reg, priors, (640, 640))}
    res = fns["ours core.predict, N(0,1) logits"]()
    res_init = fns["ours core.predict, init-like logits"]()
    sanity = {"ours config": str(core.test_config()),
              "N(0,1) logits": f"{len(priors)} anchors x 80 sigmoid logits ~ N(0, 1) (random_predictions, seed 0); "
                               f"counts {res.counts}",
              "init-like logits": f"-4.595 + {sigma:.4f} * N(0, 1) -> {n_init} pairs above {thr}; "
                                  f"counts {res_init.counts}"}
    return dict(name="retinanet640", fns=fns, headline=("ours core.predict, init-like logits", None),
                sanity=sanity, target_ms=None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", nargs="+", default=["1", "2"],
                    help='thread configurations: 1, 2, or 2busy (2 threads + a busy process on one core)')
    ap.add_argument("--profile", action="store_true", help="cProfile our side after timing")
    args = ap.parse_args(argv)

    print(header())
    t_start = time.perf_counter()
    cases = [ssd300_case(), retinanet640_case()]
    for case in cases:
        print(f"\n[{case['name']}] setup / sanity")
        for k, v in case["sanity"].items():
            print(f"  {k:24s} {v}")

    results = []
    for threads in args.threads:
        with thread_config(threads) as label:
            print(f"\n== {label} ==")
            print(f"{'case':13s} {'implementation':44s} {'median ms':>10s} {'p90 ms':>8s} {'tv/this':>8s}")
            for case in cases:
                times = run_interleaved(case["fns"], args.reps, args.warmup)
                med = {k: statistics.median(v) for k, v in times.items()}
                ours_name, tv_name = case["headline"]
                for name, vals in times.items():
                    ratio = f"{med[tv_name] / med[name]:7.2f}x" if tv_name else "      -"
                    print(f"{case['name']:13s} {name:44s} {med[name]:10.2f} {pct(vals, 0.9):8.2f} {ratio:>8s}")
                results.append((case, threads, med[ours_name], med[tv_name] if tv_name else med))
        print()

    print(f"total bench time {time.perf_counter() - t_start:.0f} s")
    for case, threads, ours, theirs in results:
        if case["target_ms"] is not None:  # (cases without a target have no torchvision peer)
            print(f"target {case['name']} postprocess threads={threads}: ours {ours:.2f} ms; under "
                  f"{case['target_ms']:.0f} ms: {_yes(ours < case['target_ms'])}; faster than torchvision "
                  f"({theirs:.2f} ms): {_yes(ours < theirs)}")
    if args.profile:
        torch.set_num_threads(1)
        for case in cases:
            profile_ours(case)
    for case, threads, ours, theirs in results:
        if isinstance(theirs, dict):  # no peer: every row of ours
            for name, value in theirs.items():
                print(f"TIME {case['name']}_postprocess threads={threads} {name}: median {value:.1f} ms (no peer)")
    for case, threads, ours, theirs in results:
        if not isinstance(theirs, dict):
            print(f"RATIO {case['name']}_postprocess threads={threads} torchvision/ours = {theirs / ours:.1f}x "
                  f"(median ours {ours:.1f} ms, theirs {theirs:.1f} ms, {args.reps} reps)")


if __name__ == "__main__":
    main()
