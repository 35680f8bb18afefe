"""Benchmark: the NMS stage with its suppression record vs torchvision's ``batched_nms`` alone.

Candidates as a sigmoid head with a low ``score_thr`` hands them to NMS (``clustered``): 80%
of the boxes around 12 objects of a 1333x800 image (centre jitter 0.15 of the object size,
log-normal scale jitter 0.2), 20% anywhere with anchor-like sizes; 80 classes; 30% of the
clustered boxes carry their object's class with a high score, the rest a random class with a
score just over 0.05 (0.05 + Exp(25)). 3,500 candidates (below mmcv's split_thr: one NMS over
all shifted boxes, which DetScope runs per class when no class can reach another) and 50,000
(mmcv's split_thr branch: per class).

* ours NMS + record: ``detengine.postprocess._nms_stages``, the NMS stage of
  ``postprocess_dense`` (size filter, mmcv's ``batched_nms`` on the class-offset boxes, the
  suppressor and IoU of every suppressed candidate, stages, max_per_img 100).
* ours, record-free: the same with ``record=False`` (what evaluation and export need).
* torchvision ``batched_nms``: the kept indices only (raw coordinates per class above 1,000
  candidates on CPU, so a few pairs at the threshold can get the other verdict: printed).
* with ``--old``: the record as it was computed before (``oracle_nms_stages`` of
  ``tests/engine/test_nms_record_fast.py``: every same-class (kept, suppressed) pair), and a
  check that the new record equals it.

Implementations are interleaved (rotating order) after a warm-up, with 1 torch thread
(``torch.set_num_threads(1)``; ``--threads 1 2`` adds 2).

Run from the repository root:  .venv/bin/python bench/bench_nms_record.py [--reps N] [--old] [--threads ...]
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

from bench_trace import _yes, header, pct, run_interleaved, thread_config  # noqa: E402
from torchvision.ops import batched_nms  # noqa: E402

from detengine.postprocess import Stage, _nms_stages  # noqa: E402

IOU_THR = 0.5
SIZES = (3500, 50_000)
TARGETS = {3500: 1.2, 50_000: 1.5}  # ours NMS + record / torchvision batched_nms at most
TARGET_RECORD_FREE = 1.05


def clustered(n, num_classes=80, num_objects=12, size=(800, 1333), seed=0, thr=0.05, scattered=0.2):
    """``n`` (box, score, label) candidates as described in the module docstring."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    osz = torch.exp(torch.rand(num_objects, 2, generator=g) * 2.6 + 3.4)  # objects 30..400 px
    oc = torch.rand(num_objects, 2, generator=g) * torch.tensor([w, h])
    ocls = torch.randint(0, num_classes, (num_objects,), generator=g)
    n_obj = int(n * (1 - scattered))
    which = torch.randint(0, num_objects, (n_obj,), generator=g)
    c = oc[which] + torch.randn(n_obj, 2, generator=g) * osz[which] * 0.15
    s = osz[which] * torch.exp(torch.randn(n_obj, 2, generator=g) * 0.2)
    cb = torch.rand(n - n_obj, 2, generator=g) * torch.tensor([w, h])
    sb = torch.exp(torch.rand(n - n_obj, 2, generator=g) * 3.0 + 3.0)  # 20..400 px
    centres, sizes = torch.cat([c, cb]), torch.cat([s, sb])
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    own = torch.rand(n_obj, generator=g) < 0.3
    labels = torch.randint(0, num_classes, (n,), generator=g)
    labels[:n_obj][own] = ocls[which][own]
    scores = thr - torch.log(torch.rand(n, generator=g)) / 25
    scores[:n_obj][own] = thr + (1 - thr) * torch.rand(int(own.sum()), generator=g) ** 2
    perm = torch.randperm(n, generator=g)
    return boxes[perm].contiguous(), scores.clamp(max=1.0)[perm].contiguous(), labels[perm].contiguous()


OURS, BARE, TV, OLD = ("ours NMS + record", "ours record-free", "torchvision batched_nms", "old NMS + record")


def case(n: int, with_old: bool):
    boxes, scores, labels = clustered(n)
    prior_idx = torch.arange(n)

    def stage(record=True):
        return _nms_stages(boxes, scores, labels, prior_idx, 0, IOU_THR, 100, class_agnostic=False, counts={},
                           record=record)

    fns = {OURS: stage, BARE: lambda: stage(False), TV: lambda: batched_nms(boxes, scores, labels, IOU_THR)}
    res, bare, tv_keep = stage(), stage(False), fns[TV]()
    nms_kept = res.cand_stage != Stage.SUPPRESSED
    tv_kept = torch.zeros(n, dtype=torch.bool)
    tv_kept[tv_keep] = True
    sanity = {
        "candidates": f"{n}: {int((labels[:, None] == torch.arange(80)).any(0).sum())} classes, "
                      f"scores {float(scores.min()):.3f}..{float(scores.max()):.3f}",
        "ours": f"counts {res.counts}; {int((res.suppressed_by >= 0).sum())} suppressed with their suppressor, "
                f"{int((res.cand_stage == Stage.SUPPRESSED).sum())} suppressed",
        "record-free": f"same stages {torch.equal(bare.cand_stage, res.cand_stage)}, "
                       f"same detections {torch.equal(bare.kept, res.kept)}",
        "torchvision": f"{tv_keep.numel()} kept; kept sets differ at {int((tv_kept != nms_kept).sum())} candidates "
                       f"(raw per-class coordinates vs mmcv's shifted ones)",
    }
    if with_old:
        sys.path.insert(0, str(ROOT / "tests" / "engine"))
        from test_nms_record_fast import oracle_nms_stages, record_differences

        def old():
            return oracle_nms_stages(boxes, scores, labels, prior_idx, 0, IOU_THR, 100, class_agnostic=False,
                                     counts={})
        fns[OLD] = old
        diff = record_differences(res, old())
        sanity["old record"] = "new record equal (0 ULP)" if not diff else f"DIFFERS in {diff}"
    return dict(name=f"{n // 1000}k" if n % 1000 == 0 else f"{n / 1000:.1f}k", n=n, fns=fns, sanity=sanity,
                inputs=dict(boxes=boxes, scores=scores, labels=labels, kept=nms_kept))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=0, help="timed rounds (default: 60 at 3.5k, 25 at 50k)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", nargs="+", default=["1"],
                    help='thread configurations: 1, 2, or 2busy (2 threads + a busy process on one core)')
    ap.add_argument("--old", action="store_true", help="also time the old record (slow at 50k: ~1-2 s a call)")
    args = ap.parse_args(argv)

    print(header())
    t_start = time.perf_counter()
    cases = [case(n, args.old) for n in SIZES]
    for c in cases:
        print(f"\n[{c['name']}] setup / sanity")
        for k, v in c["sanity"].items():
            print(f"  {k:14s} {v}")

    results = []
    for threads in args.threads:
        with thread_config(threads) as label:
            print(f"\n== {label} ==")
            print(f"{'case':6s} {'implementation':26s} {'median ms':>10s} {'p90 ms':>8s} {'tv/this':>8s}")
            for c in cases:
                reps = args.reps or (60 if c["n"] < 10_000 else 25)
                times = run_interleaved(c["fns"], reps, args.warmup)
                med = {k: statistics.median(v) for k, v in times.items()}
                for name, vals in times.items():
                    print(f"{c['name']:6s} {name:26s} {med[name]:10.2f} {pct(vals, 0.9):8.2f} "
                          f"{med[TV] / med[name]:7.2f}x")
                results.append((c, threads, med, reps))
        print()

    print(f"total bench time {time.perf_counter() - t_start:.0f} s")
    for c, threads, med, reps in results:
        goal = TARGETS[c["n"]]
        print(f"target {c['name']} threads={threads}: ours NMS + record {med[OURS]:.2f} ms = "
              f"{med[OURS] / med[TV]:.2f}x torchvision batched_nms ({med[TV]:.2f} ms); at most {goal}x: "
              f"{_yes(med[OURS] <= goal * med[TV])}")
        print(f"target {c['name']} threads={threads}: ours record-free {med[BARE]:.2f} ms = "
              f"{med[BARE] / med[TV]:.2f}x torchvision; at most {TARGET_RECORD_FREE}x: "
              f"{_yes(med[BARE] <= TARGET_RECORD_FREE * med[TV])}")
    for c, threads, med, reps in results:
        for name in (OURS, BARE) + ((OLD,) if OLD in med else ()):
            print(f"RATIO nms_{c['name']} threads={threads} torchvision/{name} = {med[TV] / med[name]:.2f}x "
                  f"(median {name} {med[name]:.1f} ms, torchvision {med[TV]:.1f} ms, {reps} reps)")


if __name__ == "__main__":
    main()
