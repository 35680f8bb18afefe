"""Every row of issue 18 ("Must show") re-measured in one run, side by side with its peer in one
process, and printed as ONE markdown table: ratio = peer / DetScope (> 1: DetScope faster).

Each row reuses the measurement of its own bench script (bench_trace, bench_postprocess,
bench_nms_record, bench_dsl, bench_eval, bench_train, bench_train_steps); the mmdetection peers come
from mmdet_peers.py. 1 torch thread, the implementations of a row interleaved in one loop (rotating
order) after a warm-up, medians.

    /tmp/mmref/bin/python bench/run_all.py            # every peer (mmdetection 3.3.0 imports there)
    .venv/bin/python bench/run_all.py                 # mmdetection rows say "peer not installed"
    options: --only GROUP ... (ssd_loss retina_loss assign dsl predict nms eval train)
             --scale F (reps x F; 0.3 for a quick check)   --json OUT.json

About 10-15 minutes on a loaded 2-core machine, most of it the training steps.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_dsl  # noqa: E402
import bench_eval  # noqa: E402
import bench_nms_record  # noqa: E402
import bench_postprocess  # noqa: E402
import bench_trace  # noqa: E402
import bench_train  # noqa: E402
import bench_train_steps  # noqa: E402
import mmdet_peers  # noqa: E402
import torchvision  # noqa: E402

from detengine.trace import head_core_for, model_config  # noqa: E402

NOT_INSTALLED = "peer not installed"
SCALE = 1.0
ROWS: list[dict] = []


def reps(n: int) -> int:
    return max(3, round(n * SCALE))


def row(name, peer, ours_s=None, peer_s=None, goal=None, goal_ratio=None, unit="ms", note="", extra=None):
    """One table row. Times in seconds; ``goal_ratio``: the least peer/ours that meets ``goal``."""
    r = dict(row=name, peer=peer, ours_s=ours_s, peer_s=peer_s, goal=goal or "", unit=unit, note=note)
    r["ratio"] = peer_s / ours_s if ours_s and peer_s else None
    own = (extra or {}).pop("verdict", None)                  # a verdict of its own (training: the share)
    r.update(extra or {})
    if r["ratio"] is None:
        verdict = "no peer" if NOT_INSTALLED in peer else "-"
    elif goal_ratio is not None:
        verdict = "met" if r["ratio"] >= goal_ratio else "**not met**"
    else:
        verdict = ("DetScope faster" if r["ratio"] >= 1.05 else
                   "DetScope slower" if r["ratio"] <= 0.95 else "on par (within 5%)")
    r["verdict"] = f"{own}; {verdict}" if own else verdict
    ROWS.append(r)
    print(f"  {name} | {peer}: ours {_fmt(ours_s, unit)}, peer {_fmt(peer_s, unit)}, "
          f"ratio {_ratio(r['ratio'])}; {r['verdict']} {note}", file=sys.stderr, flush=True)
    return r


def _fmt(s, unit):
    if s is None:
        return "-"
    return f"{s:.2f} s" if unit == "s" else f"{s * 1e3:.3g} ms" if s * 1e3 < 100 else f"{s * 1e3:,.0f} ms"


def _ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def timed(fns: dict, n: int, warmup: int = 2) -> dict:
    """bench_trace.run_interleaved; medians in seconds."""
    t = bench_trace.run_interleaved(fns, n, warmup)
    return {k: statistics.median(v) / 1e3 for k, v in t.items()}


def mm_error() -> str | None:
    return mmdet_peers.load()


# ------------------------------------------------------------------------------------------ rows

def ssd_loss():
    """SSD300 assign + targets + loss, 10 GTs: vs mmdetection's SSDHead.loss_by_feat, torchvision's SSD loss."""
    case = bench_trace.ssd300_case()
    inp = case["inputs"]
    ours_k, tv_k = case["headline"]
    fns = {ours_k: case["fns"][ours_k], tv_k: case["fns"][tv_k]}
    note = ""
    if not mm_error():
        fns["mmdet"], terms = mmdet_peers.head_loss("ssd300_coco", inp["core"], inp["cls"], inp["reg"], inp["gt_boxes"],
                                                    inp["gt_labels"], inp["shape"])
        note = _same_loss(inp["loss"], terms)
    t = timed(fns, reps(100), 5)
    name = "SSD300 assign + targets + loss (8,732 priors, 10 GT; ours: `inspect(postprocess=False)`)"
    row(name, "mmdetection SSDHead.loss_by_feat" if "mmdet" in fns else f"mmdetection: {NOT_INSTALLED}",
        t[ours_k], t.get("mmdet"), note=note)
    row("same", "torchvision SSD: box_iou + SSDMatcher + compute_loss (K=91)", t[ours_k], t[tv_k])


def _same_loss(ours: dict, theirs: dict) -> str:
    diffs = [abs(float(ours[k]) - theirs[k]) / max(1e-9, abs(theirs[k])) for k in theirs if k in ours]
    return f"losses equal (max rel. diff {max(diffs):.1e})" if diffs and max(diffs) < 1e-5 else \
        f"LOSSES DIFFER: ours {dict((k, float(v)) for k, v in ours.items())} vs {theirs}"


def retina_loss():
    """RetinaNet loss path (assign, targets, focal + L1) at 640x640 and 1333x800 vs mmdetection's RetinaHead."""
    case = bench_trace.retinanet640_case()
    inp = case["inputs"]
    ours_k, tv_k = case["headline"]
    fns = {ours_k: case["fns"][ours_k], tv_k: case["fns"][tv_k]}
    note = ""
    if not mm_error():
        fns["mmdet"], terms = mmdet_peers.head_loss("retinanet_r50_fpn_1x_coco", inp["core"], inp["cls"], inp["reg"],
                                                    inp["gt_boxes"], inp["gt_labels"], inp["shape"])
        note = _same_loss(inp["loss"], terms)
    t = timed(fns, reps(20), 2)
    row("RetinaNet loss path 640x640 (76,725 anchors, 10 GT; ours: `inspect(postprocess=False)`)",
        "mmdetection RetinaHead.loss_by_feat" if "mmdet" in fns else f"mmdetection: {NOT_INSTALLED}",
        t[ours_k], t.get("mmdet"), note=note)
    row("same (not an issue row: the earlier sections' figure)",
        "torchvision RetinaNet.compute_loss (K=91)", t[ours_k], t[tv_k])

    case = bench_trace.ours_trace_case("retinanet_r50_fpn_coco", (800, 1344), (800, 1333))
    inp = case["inputs"]
    fns = dict(case["fns"])
    note = ""
    if not mm_error():
        fns["mmdet"], terms = mmdet_peers.head_loss("retinanet_r50_fpn_1x_coco", inp["core"], inp["cls"], inp["reg"],
                                                    inp["gt_boxes"], inp["gt_labels"], inp["shape"], inp["img_shape"])
        note = _same_loss(inp["loss"], terms)
    t = timed(fns, reps(10), 1)
    row(f"RetinaNet loss path 1333x800 (padded 1344x800: {len(inp['priors']):,} anchors, 10 GT)",
        "mmdetection RetinaHead.loss_by_feat" if "mmdet" in fns else f"mmdetection: {NOT_INSTALLED}",
        t["ours inspect(postprocess=False)"], t.get("mmdet"), note=note)


def assign():
    """MaxIoUAssigner (SSD300 8732 x 10, RetinaNet 640 76725 x 20) and ATSS vs mmdetection's."""
    cases = [("MaxIoUAssigner, SSD300: 8,732 priors x 10 GT", "ssd300_coco", (300, 300), (300, 300), 10,
              "ssd300_coco", 100),
             ("MaxIoUAssigner, RetinaNet 640x640: 76,725 anchors x 20 GT", "retinanet_r50_fpn_coco", (640, 640),
              (640, 640), 20, "retinanet_r50_fpn_1x_coco", 30),
             ("ATSSAssigner (topk 9), ATSS 1333x800 (padded 1344x800): {n:,} anchors x 20 GT", "atss_r50_fpn_coco",
              (800, 1344), (800, 1333), 20, None, 30)]
    for label, config, shape, img_shape, num_gt, mm_config, n in cases:
        core = head_core_for(model_config(bench_trace.CONFIGS / f"{config}.py"))
        priors = core.priors(shape)
        pri = priors.tensor
        gt_boxes, gt_labels = bench_trace.random_gts(img_shape, num_gt)
        a = core.assigner
        kw = {}
        if mm_config is None:
            kw["num_level_priors"] = torch.bincount(priors.level, minlength=priors.num_levels).tolist()
        fns = {"ours": lambda a=a, kw=kw: a.assign(pri, gt_boxes, gt_labels, **kw).gt_inds}
        note, peer = "", f"mmdetection: {NOT_INSTALLED}"
        if not mm_error():
            if mm_config is None:
                fns["mmdet"] = mmdet_peers.atss(a.topk, pri, kw["num_level_priors"], gt_boxes, gt_labels)
                peer = "mmdetection ATSSAssigner.assign"
            else:
                fns["mmdet"] = mmdet_peers.max_iou(mmdet_peers.assigner_cfg(mm_config), pri, gt_boxes, gt_labels)
                peer = "mmdetection MaxIoUAssigner.assign"
            same = torch.equal(fns["ours"](), fns["mmdet"]())
            note = f"same gt_inds ({int((fns['ours']() > 0).sum())} positives)" if same else "ASSIGNMENTS DIFFER"
        t = timed(fns, reps(n), 2)
        row(label.format(n=len(pri)), peer, t["ours"], t.get("mmdet"), note=note)


def dsl():
    """RTMDet's DynamicSoftLabelAssigner, 8,400 priors x 20 / 100 GTs, vs mmdetection's (bench_dsl.measure)."""
    for num_gt, n in ((20, 20), (100, 8)):
        label = f"DynamicSoftLabelAssigner, RTMDet 640: 8,400 priors x {num_gt} GT"
        goal = "≥ 1.3x"
        if mm_error():
            m = bench_dsl.measure(num_gt, reps(n), lambda *a: torch.zeros(0))  # ours alone (no peer)
            row(label, f"mmdetection: {NOT_INSTALLED}", m["ours_ms"] / 1e3, None, goal=goal)
            continue
        name, peer = bench_dsl._peer()
        m = bench_dsl.measure(num_gt, reps(n), peer)
        row(label, f"{name} DynamicSoftLabelAssigner.assign", m["ours_ms"] / 1e3, m["peer_ms"] / 1e3, goal=goal,
            goal_ratio=1.3, note="same assignment" if m["same"] else "ASSIGNMENTS DIFFER")


def predict():
    """SSD300 predict with the suppression record vs mmdetection's predict_by_feat and torchvision's postprocess."""
    case = bench_postprocess.ssd300_case()
    inp = case["inputs"]
    ours_k, tv_k = case["headline"]
    fns = {ours_k: case["fns"][ours_k], tv_k: case["fns"][tv_k]}
    note = ""
    if not mm_error():
        fns["mmdet"], res = mmdet_peers.head_predict("ssd300_coco", inp["core"], inp["cls"], inp["reg"], inp["shape"])
        ours = inp["result"]
        same = (len(res.scores) == len(ours.scores) and torch.equal(res.labels, ours.labels)
                and torch.allclose(res.scores, ours.scores) and torch.allclose(res.bboxes, ours.boxes, atol=1e-3))
        note = f"same {len(res.scores)} detections" if same else "DETECTIONS DIFFER"
    t = timed(fns, reps(30), 3)
    n_cand = int((inp["cls"].softmax(-1)[:, :-1] > bench_postprocess.SCORE_THR).sum())
    row(f"SSD300 predict with the suppression record (init-like logits, {n_cand:,} pairs > 0.02)",
        "mmdetection SSDHead.predict_by_feat" if "mmdet" in fns else f"mmdetection: {NOT_INSTALLED}",
        t[ours_k], t.get("mmdet"), note=note)
    row("same", "torchvision SSD.postprocess_detections (topk 400)", t[ours_k], t[tv_k])


def nms():
    """Multiclass NMS with the record at 3.5k and 50k candidates vs torchvision batched_nms (and mmcv's at 50k)."""
    OURS, TV = bench_nms_record.OURS, bench_nms_record.TV
    for n, k, goal, goal_ratio in ((3500, 60, "≥ 0.83x (≤ 1.2x tv time)", 1 / 1.2),
                                   (50_000, 25, "≥ 0.67x (≤ 1.5x tv time)", 1 / 1.5)):
        case = bench_nms_record.case(n, False)
        fns = {OURS: case["fns"][OURS], TV: case["fns"][TV]}
        note = ""
        if n > 10_000 and not mm_error():
            inp = case["inputs"]
            fns["mmdet"] = mmdet_peers.batched_nms(inp["boxes"], inp["scores"], inp["labels"], bench_nms_record.IOU_THR)
            kept = torch.zeros(n, dtype=torch.bool)
            kept[fns["mmdet"]()] = True
            note = f"kept sets differ at {int((kept != inp['kept']).sum())} candidates"
        t = timed(fns, reps(k), 2)
        label = f"multiclass NMS with the record, {n:,} candidates (80 classes, clustered)"
        if n > 10_000:
            row(label, "mmcv batched_nms (mmdetection's; kernel: the stub's torchvision nms)" if "mmdet" in fns
                else f"mmdetection: {NOT_INSTALLED}", t[OURS], t.get("mmdet"), note=note)
            label = "same"
        row(label, "torchvision batched_nms alone", t[OURS], t[TV], goal=goal, goal_ratio=goal_ratio)


def evaluation():
    """evaluate_coco vs faster-coco-eval alone (bench_eval.measure)."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        m = None
    else:
        m = bench_eval.measure(reps(15))
    label = "COCO evaluation: 200 images, 1,600 GT, 20,000 detections"
    if m is None:
        row(label, f"faster-coco-eval: {NOT_INSTALLED}", goal="≥ 0.9x")
    else:
        row(label, "faster-coco-eval alone (COCO, loadRes, COCOeval_faster)", m["ours_ms"] / 1e3, m["peer_ms"] / 1e3,
            goal="≥ 0.9x", goal_ratio=0.9, note="same 12 numbers" if m["same"] else "NUMBERS DIFFER")


def _d2l_status() -> str:
    try:
        import d2l  # noqa: F401
    except ImportError:
        return "d2l: peer not installed (the d2l package imports in neither venv)"
    return "d2l imports, but its TinySSD is the book's code, not the package's: no peer run"


def train():
    """Training steps (forward, loss, backward, SGD on a fixed batch) vs the closest peer, and the share
    of ours outside the network (bench_train_steps: the same update after a backward of the outputs' sum)."""
    n = reps(3)
    cases = [("TinySSD", "tinyssd_banana", 256, 32, None),
             ("SSD300 (VGG16)", "ssd300_coco", 300, 4, ("torchvision ssd300_vgg16", lambda: bench_train.torchvision_step(4))),
             ("RetinaNet R50-FPN", "retinanet_r50_fpn_coco", 640, 2,
              ("torchvision retinanet_resnet50_fpn", lambda: bench_train_steps._torchvision_retinanet(640, 2))),
             ("RTMDet-tiny", "rtmdet_tiny_coco", 640, 2, ("mmdetection RTMDet", lambda: bench_train_steps._mmdet_rtmdet(640, 2)))]
    for label, config, size, batch, peer in cases:
        step, net, loss_path = bench_train_steps._ours(config, size, batch)
        sides = {"ours": step, "network": net}
        peer_name = _d2l_status() if peer is None else peer[0]
        if peer is not None:
            if peer[0].startswith("mmdetection") and mm_error():
                peer_name = f"mmdetection RTMDet: {NOT_INSTALLED}"
            else:
                fn = peer[1]()
                if fn is None:
                    peer_name = f"{peer[0]}: {NOT_INSTALLED}"
                else:
                    sides["peer"] = fn
        t = bench_train_steps._time(sides, n)
        # the share outside the network measured directly: the loss path alone (given the head's outputs)
        # timed beside the whole step, more rounds (it is small); the difference step - network of two
        # big noisy medians swung 1-20 % between runs on this shared machine
        direct = bench_train_steps._time({"ours": step, "loss_path": loss_path}, max(n, 5))
        share = direct["loss_path"] / direct["ours"]
        outside = 1 - t["network"] / t["ours"]      # < 0: the network-only median above the step's (noise)
        row(f"{label} training step, batch {batch} at {size}x{size}", peer_name, t["ours"], t.get("peer"),
            unit="s", goal="outside the network ≤ 5%",
            note=f"loss path alone (priors, assignment, targets, losses, their backward to the head outputs) "
                 f"{direct['loss_path'] * 1e3:.0f} ms of a {direct['ours']:.2f} s step; network only (forward, "
                 f"backward of the outputs' sum, update) {t['network']:.2f} s, step - network {outside * 100:.1f}%",
            extra=dict(outside=share, outside_by_difference=outside, network_s=t["network"],
                       loss_path_s=direct["loss_path"],
                       verdict=f"outside the network {share * 100:.1f}%: "
                               f"{'met' if share <= 0.05 else '**not met**'}"))
        del step, net, loss_path, sides
        gc.collect()


GROUPS = {"ssd_loss": ssd_loss, "retina_loss": retina_loss, "assign": assign, "dsl": dsl, "predict": predict,
          "nms": nms, "eval": evaluation, "train": train}


# ---------------------------------------------------------------------------------------- output

def _sh(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def load_average() -> str:
    out = _sh(["uptime"])
    return out.split("load average:")[-1].strip() if "load average" in out else out


def cpu_model() -> str:
    for line in _sh(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _numpy_version() -> str:
    import numpy
    return numpy.__version__


def table(rows) -> str:
    lines = ["| row | peer | ours (median) | peer (median) | peer / DetScope | goal | verdict | check |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = _ratio(r["ratio"])
        if r["ratio"] is not None:
            ratio = f"**{ratio}**"
        lines.append(f"| {r['row']} | {r['peer']} | {_fmt(r['ours_s'], r['unit'])} | {_fmt(r['peer_s'], r['unit'])} | "
                     f"{ratio} | {r['goal']} | {r['verdict']} | {r['note']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    global SCALE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    ap.add_argument("--scale", type=float, default=1.0, help="timed rounds x SCALE (at least 3)")
    ap.add_argument("--json", default=None, help="also write the rows and the header here")
    args = ap.parse_args(argv)
    SCALE = args.scale
    torch.set_num_threads(1)
    start, load_start, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_average(), time.perf_counter()
    versions = bench_trace.header()                 # the commit at the start (others may commit meanwhile)
    print(versions, file=sys.stderr, flush=True)
    for name in args.only:
        g0 = time.perf_counter()
        print(f"[{name}]", file=sys.stderr, flush=True)
        GROUPS[name]()
        print(f"[{name}] {time.perf_counter() - g0:.0f} s", file=sys.stderr, flush=True)
    load_end, total = load_average(), time.perf_counter() - t0
    try:
        from faster_coco_eval import __version__ as fce_version
    except ImportError:
        fce_version = NOT_INSTALLED
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    given = " ".join(sys.argv[1:] if argv is None else argv)
    header = dict(
        date=start, command=f"{exe} bench/run_all.py" + (f" {given}" if given else ""),
        load_start=load_start, load_end=load_end, total_s=total, cpu=cpu_model(), cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(), torch=torch.__version__, torchvision=torchvision.__version__,
        mmdet=mmdet_peers.version() or NOT_INSTALLED, faster_coco_eval=fce_version, numpy=_numpy_version(),
        python=platform.python_version(), commit=versions.split(";")[0].removeprefix("commit "))
    print(f"All rows in one run (issue 18), {start}\n")
    print(f"`{header['command']}`: {total / 60:.1f} min; commit {header['commit']}; load average (1, 5, 15 min) "
          f"{load_start} at the start, {load_end} at the end; CPU {header['cpu']}, {header['cpus']} cores, "
          f"{header['torch_threads']} torch thread; torch {header['torch']}, torchvision {header['torchvision']}, "
          f"mmdet {header['mmdet']}, faster-coco-eval {header['faster_coco_eval']}, numpy {header['numpy']}, "
          f"Python {header['python']}.\n")
    print(table(ROWS))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(header=header, rows=ROWS), indent=1))


if __name__ == "__main__":
    main()
