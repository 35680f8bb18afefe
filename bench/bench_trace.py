"""Benchmark: the inspection trace (targets + loss, no network) next to torchvision's own utilities.

Cases (10 seeded random GTs of varied sizes, seeded random head outputs, priors cached):

* ``ssd300``: SSD300, 8732 priors. Ours: ``inspect(..., postprocess=False)`` (MaxIoUAssigner,
  pseudo sampler, target encoding, per-anchor CE + hard-negative mining + smooth L1, per-GT
  coverage and the loss breakdown). Theirs: exactly what ``torchvision SSD.forward`` does in
  training for one image: ``box_iou`` -> ``SSDMatcher(0.5)`` -> ``SSD.compute_loss`` (BoxCoder
  10,10,5,5, smooth L1, CE, hard-negative mining), on its ``DefaultBoxGenerator`` anchors.
* ``retinanet640``: RetinaNet R50-FPN at 640x640, 76725 anchors. Ours: ``inspect`` as above
  (MaxIoUAssigner 0.5/0.4, focal + L1). Theirs: ``RetinaNet.compute_loss`` (``box_iou`` ->
  ``Matcher(0.5, 0.4, allow_low_quality_matches=True)`` -> head losses: sigmoid focal + L1).

Rows per case: ours full trace (the headline), ours ``core.targets`` + ``core.loss_image`` only,
torchvision with its stock class count (SSD 91 with background first, RetinaNet 91), and
torchvision fed our very logits (same K: SSD 81 background-first, RetinaNet 80) so both sides do
the same amount of work and the loss values can be compared. The implementations are interleaved
(rotating order) in one loop, after a warm-up; the whole thing runs with 1 and with 2 torch
threads (``--threads 1 2 2busy`` adds 2 threads while a busy-loop process holds one core, the
shared-machine case). Medians and p90 in ms; ratio = torchvision (stock) / ours.

Run from the repository root:  .venv/bin/python bench/bench_trace.py [--reps N] [--threads ...] [--profile]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import math
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torchvision  # noqa: E402
from torchvision.models.detection import retinanet_resnet50_fpn, ssd300_vgg16  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.ops import boxes as box_ops  # noqa: E402

from detengine.trace import head_core_for, inspect, model_config, random_predictions  # noqa: E402

CONFIGS = ROOT / "resources" / "configs"
NUM_GTS = 10


def random_gts(size, n: int = NUM_GTS, num_classes: int = 80, seed: int = 0):
    """``n`` seeded boxes inside a ``size`` x ``size`` image (or ``size = (h, w)``), sides
    log-uniform in [4%, 70%] of the shorter side, aspect ratios in [1/3, 3]; labels in [0, num_classes)."""
    img_h, img_w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    side = min(img_h, img_w) * torch.exp(torch.empty(n).uniform_(math.log(0.04), math.log(0.7), generator=g))
    aspect = torch.exp(torch.empty(n).uniform_(math.log(1 / 3), math.log(3), generator=g))
    w = (side * aspect.sqrt()).clamp(2, img_w - 1)
    h = (side / aspect.sqrt()).clamp(2, img_h - 1)
    x1 = torch.rand(n, generator=g) * (img_w - w)
    y1 = torch.rand(n, generator=g) * (img_h - h)
    boxes = torch.stack([x1, y1, x1 + w, y1 + h], 1)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return boxes, labels


def header() -> str:
    """Versions and the engine commit the numbers belong to."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "detengine"], capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        if dirty:
            commit += f" + uncommitted changes in {', '.join(dirty[:4])}" + (", ..." if len(dirty) > 4 else "")
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return (f"commit {commit}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, date {time.strftime('%Y-%m-%d', time.gmtime())}")


@contextlib.contextmanager
def thread_config(spec: str):
    """``"1"``, ``"2"``: torch.set_num_threads(n). ``"2busy"``: 2 threads while a busy-loop process
    (started here, stopped here by its handle) holds one core, as when the machine is shared."""
    busy = spec.endswith("busy")
    n = int(spec[:-4] if busy else spec)
    torch.set_num_threads(n)
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if proc is not None:
            time.sleep(0.5)
        yield (f"torch.set_num_threads({n})" + (" + 1 busy-loop process on the machine" if busy else ""))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_interleaved(fns: dict, reps: int, warmup: int) -> dict[str, list[float]]:
    """Call every fn once per round, rotating the order each round; times in ms."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    gc.collect()
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


# ----------------------------------------------------------------------------------------- cases

def ssd300_case():
    model = model_config(CONFIGS / "ssd300_coco.py")
    core = head_core_for(model)
    priors = core.priors((300, 300))
    cls, reg = random_predictions(core, priors, seed=0)  # (A, 81) background last, (A, 4)
    gt_boxes, gt_labels = random_gts(300)

    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
    tv.train()
    images = ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    feats = [torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)]  # SSD300 VGG16 feature sizes
    with torch.no_grad():
        anchors = [a.detach().clone() for a in tv.anchor_generator(images, feats)]  # cached
    a = anchors[0].shape[0]
    g = torch.Generator().manual_seed(1)
    stock_out = {"cls_logits": torch.randn(1, a, 91, generator=g),
                 "bbox_regression": torch.randn(1, a, 4, generator=g) * 0.5}
    # our very tensors in torchvision's layout: background column moved to the front
    same_out = {"cls_logits": torch.cat([cls[:, -1:], cls[:, :-1]], 1)[None].contiguous(),
                "bbox_regression": reg[None].contiguous()}
    tv_targets = [{"boxes": gt_boxes.clone(), "labels": gt_labels + 1}]  # torchvision: 0 = background

    def tv_loss(head_outputs):
        # SSD.forward, training branch, one image (network and anchor generation excluded)
        matched_idxs = []
        for anchors_per_image, targets_per_image in zip(anchors, tv_targets):
            quality = box_ops.box_iou(targets_per_image["boxes"], anchors_per_image)
            matched_idxs.append(tv.proposal_matcher(quality))
        losses = tv.compute_loss(tv_targets, head_outputs, anchors, matched_idxs)
        return losses, matched_idxs

    fns = {
        "ours inspect(postprocess=False)": lambda: inspect((300, 300), gt_boxes, gt_labels, model, (cls, reg),
                                                           postprocess=False),
        "ours core.targets+loss_image": lambda: _core_loss(core, priors, gt_boxes, gt_labels, (300, 300), cls, reg),
        "torchvision SSD (K=91 stock)": lambda: tv_loss(stock_out),
        "torchvision SSD (K=81, our logits)": lambda: tv_loss(same_out),
    }
    trace = fns["ours inspect(postprocess=False)"]()
    stock, matched = tv_loss(stock_out)
    same, _ = tv_loss(same_out)
    sanity = {
        "priors/anchors": f"ours {len(priors)}, torchvision {a}; {_prior_diff(priors.tensor, anchors[0])}"
                          " (torchvision clips its default boxes to the image)",
        "ours loss": _fmt_terms(trace.loss.terms) + f"; positives {trace.targets.num_pos}",
        "tv loss (K=91 stock)": _fmt_terms(stock) + f"; foreground matches {int((matched[0] >= 0).sum())}",
        "tv loss (K=81, our logits)": _fmt_terms(same) + "  (same logits: should be close to ours)",
    }
    finite = all(math.isfinite(float(v)) for d in (trace.loss.terms, stock, same) for v in d.values())
    return dict(name="ssd300", fns=fns, headline=("ours inspect(postprocess=False)", "torchvision SSD (K=91 stock)"),
                sanity=sanity, finite=finite, target_ms=6.0,
                inputs=dict(model=model, core=core, priors=priors, cls=cls, reg=reg, gt_boxes=gt_boxes,
                            gt_labels=gt_labels, shape=(300, 300), loss=trace.loss.terms))


def retinanet640_case():
    model = model_config(CONFIGS / "retinanet_r50_fpn_coco.py")
    core = head_core_for(model)
    priors = core.priors((640, 640))
    cls, reg = random_predictions(core, priors, seed=0)  # (A, 80) sigmoid logits, (A, 4)
    gt_boxes, gt_labels = random_gts(640)

    tv = retinanet_resnet50_fpn(weights=None, weights_backbone=None)
    tv.train()
    images = ImageList(torch.zeros(1, 3, 640, 640), [(640, 640)])
    feats = [torch.zeros(1, 1, 640 // s, 640 // s) for s in (8, 16, 32, 64, 128)]  # P3-P7
    with torch.no_grad():
        anchors = [a.detach().clone() for a in tv.anchor_generator(images, feats)]  # cached
    a = anchors[0].shape[0]
    k_stock = tv.head.classification_head.num_classes
    g = torch.Generator().manual_seed(1)
    stock_out = {"cls_logits": torch.randn(1, a, k_stock, generator=g),
                 "bbox_regression": torch.randn(1, a, 4, generator=g) * 0.5}
    same_out = {"cls_logits": cls[None].contiguous(), "bbox_regression": reg[None].contiguous()}
    tv_targets_stock = [{"boxes": gt_boxes.clone(), "labels": gt_labels + 1}]  # COCO-91 ids
    tv_targets_same = [{"boxes": gt_boxes.clone(), "labels": gt_labels.clone()}]  # our 80 columns

    def tv_loss(head_outputs, targets):
        # RetinaNet.compute_loss: box_iou -> Matcher(0.5, 0.4, low-quality) -> focal + L1
        return tv.compute_loss(targets, head_outputs, anchors)

    def tv_matches():
        return tv.proposal_matcher(box_ops.box_iou(gt_boxes, anchors[0]))

    fns = {
        "ours inspect(postprocess=False)": lambda: inspect((640, 640), gt_boxes, gt_labels, model, (cls, reg),
                                                           postprocess=False),
        "ours core.targets+loss_image": lambda: _core_loss(core, priors, gt_boxes, gt_labels, (640, 640), cls, reg),
        f"torchvision RetinaNet (K={k_stock} stock)": lambda: tv_loss(stock_out, tv_targets_stock),
        "torchvision RetinaNet (K=80, our logits)": lambda: tv_loss(same_out, tv_targets_same),
    }
    trace = fns["ours inspect(postprocess=False)"]()
    stock = tv_loss(stock_out, tv_targets_stock)
    same = tv_loss(same_out, tv_targets_same)
    m = tv_matches()
    sanity = {
        "priors/anchors": f"ours {len(priors)}, torchvision {a}; {_prior_diff(priors.tensor, anchors[0])}"
                          " (mmdet vs torchvision anchor centres/rounding)",
        "ours loss": _fmt_terms(trace.loss.terms) + f"; positives {trace.targets.num_pos}, "
                     f"ignored {int((trace.assign_result.gt_inds < 0).sum())}",
        f"tv loss (K={k_stock} stock)": _fmt_terms(stock) + f"; foreground matches {int((m >= 0).sum())}, "
                                         f"ignored {int((m == -2).sum())}",
        "tv loss (K=80, our logits)": _fmt_terms(same),
    }
    finite = all(math.isfinite(float(v)) for d in (trace.loss.terms, stock, same) for v in d.values())
    return dict(name="retinanet640", fns=fns,
                headline=("ours inspect(postprocess=False)", f"torchvision RetinaNet (K={k_stock} stock)"),
                sanity=sanity, finite=finite, target_ms=40.0,
                inputs=dict(model=model, core=core, priors=priors, cls=cls, reg=reg, gt_boxes=gt_boxes,
                            gt_labels=gt_labels, shape=(640, 640), loss=trace.loss.terms))


def ours_trace_case(config: str, shape, img_shape=None, num_gts: int = NUM_GTS):
    """Ours alone: ``inspect(postprocess=False)`` of ``config`` (a file of resources/configs) at the
    network input ``shape = (h, w)`` (mmdetection's batch input, e.g. (800, 1344) for a 1333x800
    image padded to 32; ``img_shape`` the image inside it), seeded head outputs and GTs as above.
    ``inputs`` holds what a peer needs to do the same work."""
    model = model_config(CONFIGS / f"{config}.py")
    core = head_core_for(model)
    priors = core.priors(shape)
    cls, reg = random_predictions(core, priors, seed=0)
    img_shape = tuple(img_shape or shape)
    gt_boxes, gt_labels = random_gts(img_shape, num_gts)

    def ours():
        return inspect(shape, gt_boxes, gt_labels, model, (cls, reg), img_shape=img_shape, postprocess=False)
    trace = ours()
    return dict(name=f"{config}@{shape[1]}x{shape[0]}", fns={"ours inspect(postprocess=False)": ours},
                inputs=dict(model=model, core=core, priors=priors, cls=cls, reg=reg, gt_boxes=gt_boxes,
                            gt_labels=gt_labels, shape=tuple(shape), img_shape=img_shape, loss=trace.loss.terms))


def _core_loss(core, priors, gt_boxes, gt_labels, shape, cls, reg):
    targets = core.targets(priors, gt_boxes, gt_labels, shape, cls_scores=cls, bbox_preds=reg)
    return core.loss_image(cls, reg, priors, targets, core.reduce_avg_factor([core.avg_factor_of(targets)]))


def _prior_diff(ours, theirs) -> str:
    if ours.shape != theirs.shape:
        return "shapes differ"
    d = (ours - theirs).abs().amax(1)
    return f"max |ours - tv| = {float(d.max()):.3g} px, {int((d > 1).sum())} priors differ by > 1 px"


def _yes(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _fmt_terms(terms: dict) -> str:
    return ", ".join(f"{k}={float(v):.4f}" for k, v in terms.items())


# ------------------------------------------------------------------------------------------ main

def profile_ours(case, reps: int = 20, top: int = 15):
    fn = case["fns"][case["headline"][0]]
    fn()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(reps):
        fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative")
    print(f"\n-- cProfile of {case['name']} / {case['headline'][0]}, {reps} calls, "
          f"top {top} by cumulative time (ms per call) --")
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append((ct / reps * 1e3, tt / reps * 1e3, nc // reps, f"{Path(file).name}:{line}({func})"))
    rows.sort(reverse=True)
    print(f"{'cum ms':>8} {'self ms':>8} {'calls':>6}  function")
    for cum, self_ms, calls, name in rows[:top]:
        print(f"{cum:8.2f} {self_ms:8.2f} {calls:6d}  {name}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=None, help="timed rounds per case (default 100 SSD, 40 RetinaNet)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", nargs="+", default=["1", "2"],
                    help='thread configurations: 1, 2, or 2busy (2 threads + a busy process on one core)')
    ap.add_argument("--cases", nargs="+", default=["ssd300", "retinanet640"])
    ap.add_argument("--profile", action="store_true", help="cProfile our side after timing")
    args = ap.parse_args(argv)

    print(header())
    t_start = time.perf_counter()
    builders = {"ssd300": ssd300_case, "retinanet640": retinanet640_case}
    default_reps = {"ssd300": 100, "retinanet640": 40}
    cases = [builders[c]() for c in args.cases]
    for case in cases:
        print(f"\n[{case['name']}] sanity")
        for k, v in case["sanity"].items():
            print(f"  {k:28s} {v}")
        print(f"  {'all losses finite':28s} {case['finite']}")
        assert case["finite"], "non-finite loss"

    ratios = []
    for threads in args.threads:
        with thread_config(threads) as label:
            print(f"\n== {label} ==")
            print(f"{'case':13s} {'implementation':40s} {'median ms':>10s} {'p90 ms':>8s} {'tv/this':>8s}")
            for case in cases:
                reps = args.reps or default_reps[case["name"]]
                times = run_interleaved(case["fns"], reps, args.warmup)
                med = {k: statistics.median(v) for k, v in times.items()}
                ours_name, tv_name = case["headline"]
                for name, vals in times.items():
                    print(f"{case['name']:13s} {name:40s} {med[name]:10.2f} {pct(vals, 0.9):8.2f} "
                          f"{med[tv_name] / med[name]:7.2f}x")
                ratios.append((case, threads, med[ours_name], med[tv_name], reps))
        print()

    print(f"total bench time {time.perf_counter() - t_start:.0f} s")
    for case, threads, ours, theirs, reps in ratios:
        print(f"target {case['name']} threads={threads}: ours {ours:.2f} ms; under {case['target_ms']:.0f} ms: "
              f"{_yes(ours < case['target_ms'])}; faster than torchvision ({theirs:.2f} ms): {_yes(ours < theirs)}")
    if args.profile:
        torch.set_num_threads(1)
        for case in cases:
            profile_ours(case)
    for case, threads, ours, theirs, reps in ratios:
        print(f"RATIO {case['name']}_trace threads={threads} torchvision/ours = {theirs / ours:.1f}x "
              f"(median ours {ours:.1f} ms, theirs {theirs:.1f} ms, {reps} reps)")


if __name__ == "__main__":
    main()
