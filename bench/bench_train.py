"""Training throughput: our TinySSD (d2l's 256 px input and the 128 px of ``tinyssd_synthetic``)
and SSD300 steps next to torchvision's ``ssd300_vgg16`` training step on the same batch,
interleaved in one loop. Prints images/s medians and the ratio.

    .venv/bin/python bench/bench_train.py [--reps 5] [--batch 4] [--threads 2]

One step = forward, loss, backward, SGD update; the batch is fixed (no data loading).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.models import build_detector  # noqa: E402
from detengine.train.runner import load_cfg  # noqa: E402


def make_batch(n: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g)
    boxes, labels = [], []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = size * 0.1 + torch.rand(3, 2, generator=g) * size * 0.3
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, 20, (3,), generator=g))
    return images, boxes, labels


def ours_step(name: str, batch_size: int, size: int):
    model_cfg = load_cfg(ROOT / "resources" / "configs" / f"{name}.py")["model"]
    model_cfg["bbox_head"]["num_classes"] = 20
    model = build_detector(model_cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images, boxes, labels = make_batch(batch_size, size)
    batch = {"images": images, "gt_boxes": boxes, "gt_labels": labels}

    def step():
        losses, _ = model.loss(batch)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    return step


def torchvision_step(batch_size: int):
    from torchvision.models.detection import ssd300_vgg16
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images, boxes, labels = make_batch(batch_size, 300)
    targets = [{"boxes": b, "labels": l + 1} for b, l in zip(boxes, labels)]
    image_list = [im for im in images]

    def step():
        losses = model(image_list, targets)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    print(f"commit {commit.strip()}; torch {torch.__version__}; {args.threads} threads; batch {args.batch}")
    sides = {"ours TinySSD 256": ours_step("tinyssd_banana", args.batch, 256),
             "ours TinySSD 128 (synthetic)": ours_step("tinyssd_synthetic", args.batch, 128),
             "ours SSD300 (VGG16)": ours_step("ssd300_coco", args.batch, 300),
             "torchvision ssd300_vgg16": torchvision_step(args.batch)}
    for step in sides.values():  # warm-up
        step()
    times = {k: [] for k in sides}
    for _ in range(args.reps):
        for name, step in sides.items():
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    peer = statistics.median(times["torchvision ssd300_vgg16"])
    print(f"{'implementation':<28} {'s/step':>8} {'images/s':>9} {'vs torchvision':>15}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} {med:8.2f} {args.batch / med:9.2f} {peer / med:14.2f}x")
    ssd = statistics.median(times["ours SSD300 (VGG16)"])
    print(f"RATIO ssd300_train_step torchvision/ours = {peer / ssd:.2f}x (ours {ssd:.2f} s, theirs {peer:.2f} s "
          f"per batch of {args.batch})")


if __name__ == "__main__":
    main()
