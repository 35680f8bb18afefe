"""The trainer's assignment statistics (assign/*, issue "What no tool shows", part 1) as a share
of a training step. The step (forward, loss, backward, SGD) and :func:`assignment_stats` on that
step's own targets are timed separately, interleaved, medians (a with/without difference of two
multi-second steps drowns a millisecond in the shared machine's noise). The trainer computes the
statistics once per ``log_interval`` (10 by default, mmdetection's configs: 50); the goal is <= 2 %
of a step.

    .venv/bin/python bench/bench_assign_stats.py [--reps 15] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import make_batch  # noqa: E402

from detengine.models import build_detector  # noqa: E402
from detengine.train.runner import load_cfg  # noqa: E402

CASES = [("tinyssd_banana", 32, 256), ("ssd300_coco", 8, 300), ("retinanet_r50_fpn_coco", 2, 640)]


def stepper(name: str, batch_size: int, size: int):
    """(a training step -> seconds, the statistics of that step's targets -> seconds)."""
    from detengine.assign_stats import assignment_stats
    model_cfg = load_cfg(ROOT / "resources" / "configs" / f"{name}.py")["model"]
    model_cfg["bbox_head"]["num_classes"] = 20
    model = build_detector(model_cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    images, boxes, labels = make_batch(batch_size, size)
    batch = {"images": images, "gt_boxes": boxes, "gt_labels": labels}
    kept = {}
    real_targets = model.core.targets

    def step() -> float:
        t0 = time.perf_counter()
        outputs = model(images)
        losses, _ = model.loss_from_outputs(batch, outputs)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        return time.perf_counter() - t0

    def keep_targets(p, *args, **kwargs):
        t = real_targets(p, *args, **kwargs)
        kept.setdefault("targets", []).append(t)
        kept.setdefault("priors", []).append(p)
        return t
    model.core.targets = keep_targets
    step()
    model.core.targets = real_targets
    targets, priors = kept["targets"][-batch_size:], kept["priors"][-batch_size:]

    def stats() -> float:
        t0 = time.perf_counter()
        assignment_stats(targets, priors, boxes)
        return time.perf_counter() - t0
    return step, stats


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--interval", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.threads} torch threads, "
          f"statistics every {args.interval} steps")
    for name, batch_size, size in CASES:
        step, stats = stepper(name, batch_size, size)
        step()
        steps, costs = [], []
        for _ in range(args.reps):
            steps.append(step())
            costs.append(statistics.median(stats() for _ in range(5)))
        plain, cost = statistics.median(steps), statistics.median(costs)
        print(f"{name:<24} batch {batch_size:>2} at {size}: step {plain * 1000:8.1f} ms, statistics {cost * 1000:6.2f} ms "
              f"({100 * cost / plain:.3f} % of a step when computed; {100 * cost / args.interval / plain:.4f} % per "
              f"step at interval {args.interval})")


if __name__ == "__main__":
    main()
