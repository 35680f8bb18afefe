"""Benchmark: the inspection trace of FCOS R50-FPN and YOLOX-s at 640x640 against mmdetection's
``loss_by_feat`` on the same head outputs.

Inputs per case: the shipped config's head (``fcos_r50_fpn_coco``: 8,525 points at strides 8..128,
80 classes + centerness, focal + IoU + centerness BCE; ``yolox_s_coco``: 8,400 points at strides
8/16/32, 80 classes + objectness, SimOTA, BCE + square IoU + objectness BCE), DetScope's seeded
``random_predictions`` (N(0, 1) logits; FCOS distances ``stride * exp(N(0, 0.5))``, YOLOX raw
``(dx, dy, log w, log h)`` ~ N(0, 0.5)) and 10 or 50 seeded GTs (sides 4 %..70 % of the image).

Rows: DetScope's whole trace ``inspect(..., postprocess=False)`` (targets, losses, the per-point
records, per-GT coverage and the loss breakdown: what the Assignment view runs), DetScope's
``core.targets`` + ``core.loss_image`` alone, and mmdetection 3.3.0's ``loss_by_feat`` of the same
head (built from the same config dict by its registry) on the same tensors laid out as its
per-level ``(1, C, H, W)`` maps (priors made inside, as in training). The losses are checked to
agree (rtol 1e-5) before timing. Interleaved rounds (rotating order), 1 torch thread, medians;
ratio = mmdetection / DetScope trace.

    /tmp/mmref/bin/python bench/bench_dense_heads.py [--reps N]    # the reference venv, sees this checkout
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_trace import run_interleaved  # noqa: E402

from detengine.shipped import find_config  # noqa: E402
from detengine.trace import head_core_for, inspect, model_config, random_predictions  # noqa: E402

SIZE = 640
CASES = {"fcos_r50_fpn_coco": ("FCOS R50-FPN", "centernesses"), "yolox_s_coco": ("YOLOX-s", "objectnesses")}


def random_gts(size: int, n: int, num_classes: int = 80, seed: int = 0):
    """bench_trace.py's GTs: sides log-uniform in [4 %, 70 %] of the image, aspect in [1/3, 3]."""
    g = torch.Generator().manual_seed(seed)
    side = size * torch.exp(torch.empty(n).uniform_(math.log(0.04), math.log(0.7), generator=g))
    aspect = torch.exp(torch.empty(n).uniform_(math.log(1 / 3), math.log(3), generator=g))
    w = (side * aspect.sqrt()).clamp(2, size - 1)
    h = (side / aspect.sqrt()).clamp(2, size - 1)
    x1 = torch.rand(n, generator=g) * (size - w)
    y1 = torch.rand(n, generator=g) * (size - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], 1), torch.randint(0, num_classes, (n,), generator=g)


def mmdet_head(model: dict):
    """mmdetection's head of ``model`` (its own registry, the config's train / test cfg)."""
    sys.path.insert(0, str(ROOT / "tests" / "engine" / "fixtures"))
    import make_mmdet_reference  # noqa: F401  (the mmcv._ext stub, register_all_modules)
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    cfg = copy.deepcopy(model)
    head = MODELS.build(dict(cfg["bbox_head"], train_cfg=ConfigDict(cfg.get("train_cfg") or {}),
                             test_cfg=ConfigDict(cfg.get("test_cfg") or {})))
    return head.train()


def per_level(flat: torch.Tensor, sizes) -> list[torch.Tensor]:
    """(A, K) in prior order -> [(1, K, H, W) per level] (mmdetection's layout)."""
    out, start = [], 0
    for h, w in sizes:
        n = h * w
        out.append(flat[start:start + n].reshape(h, w, -1).permute(2, 0, 1).unsqueeze(0).contiguous())
        start += n
    return out


def make_case(name: str, num_gt: int):
    from mmengine.structures import InstanceData
    model = model_config(find_config(name))
    core = head_core_for(model)
    priors = core.priors((SIZE, SIZE))
    cls, reg = random_predictions(core, priors, seed=0)
    gt, labels = random_gts(SIZE, num_gt)
    sizes = [tuple(s) for s in priors.featmap_sizes]
    k = core.num_classes
    head = mmdet_head(model)
    theirs = (per_level(cls[:, :k], sizes), per_level(reg, sizes), per_level(cls[:, k:], sizes))
    gts = [InstanceData(bboxes=gt.clone(), labels=labels.clone())]
    metas = [dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), batch_input_shape=(SIZE, SIZE),
                  scale_factor=(1.0, 1.0))]

    def trace():
        return inspect((SIZE, SIZE), gt, labels, model, (cls, reg), postprocess=False)

    def core_only():
        t = core.targets(priors, gt, labels, (SIZE, SIZE), cls_scores=cls, bbox_preds=reg)
        return core.loss_image(cls, reg, priors, t, core.reduce_avg_factor([core.avg_factor_of(t)]))

    def mmdet():
        with torch.no_grad():
            return head.loss_by_feat(*theirs, gts, metas)

    ours = trace().loss.terms
    ref = {key: float(v) for key, v in mmdet().items()}
    agree = set(ours) == set(ref) and all(math.isclose(float(ours[key]), ref[key], rel_tol=1e-5, abs_tol=1e-6)
                                          for key in ref)
    return dict(fns={"DetScope inspect(postprocess=False)": trace, "DetScope core.targets+loss_image": core_only,
                     "mmdetection loss_by_feat": mmdet},
                num_priors=len(priors), ours={key: float(v) for key, v in ours.items()}, theirs=ref, agree=agree)


def header() -> str:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    import mmdet
    return (f"commit {commit}; torch {torch.__version__}, mmdetection {mmdet.__version__}, python "
            f"{sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--gts", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    print(header())
    print(f"1 torch thread; {args.reps} interleaved rounds after 2 warm-up rounds; medians (p90) in ms")
    ok = True
    for name, (title, _) in CASES.items():
        for num_gt in args.gts:
            case = make_case(name, num_gt)
            ok &= case["agree"]
            times = run_interleaved(case["fns"], args.reps, warmup=2)
            med = {k: statistics.median(v) for k, v in times.items()}
            p90 = {k: sorted(v)[int(round(0.9 * (len(v) - 1)))] for k, v in times.items()}
            print(f"\n{title} 640x640, {case['num_priors']} points, {num_gt} GTs")
            for row, m in med.items():
                print(f"  {row:38s} {m:8.2f} ({p90[row]:7.2f})")
            trace = med["DetScope inspect(postprocess=False)"]
            print(f"  mmdetection / DetScope trace: {med['mmdetection loss_by_feat'] / trace:5.2f}x;  "
                  f"mmdetection / DetScope targets+loss: "
                  f"{med['mmdetection loss_by_feat'] / med['DetScope core.targets+loss_image']:5.2f}x")
            terms = "  ".join(f"{k} {case['ours'][k]:.6g} / {case['theirs'].get(k, float('nan')):.6g}"
                              for k in case["ours"])
            print(f"  losses DetScope / mmdetection: {terms}  agree (rtol 1e-5): {case['agree']}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
