"""Operations (≈ GPU kernel launches) and host syncs of each shipped detector's loss path, counted on
the CPU with the GPU's code paths (``detengine.launches``): a fixed part and a part per image, the
batch's total; ``syncs``: operations that wait for the device (``nonzero``, ``.item()``); ``copies``:
tensors made from host numbers, each a blocking copy (a host sync) if it goes to the GPU (an upper
bound: FCOS's and ATSS's float32 normaliser stays on the host).

On the H200 (2026-12-04, bench/RESULTS.md) the loss path's time was launch-bound: 14-40 µs per launch
(RetinaNet, FCOS, SSD300 steps less the network, over these counts), whatever its size. The estimate
multiplies a batch's launches by that range: a prediction to check on a GPU with bench/bench_cuda.py,
not a measurement.

    python bench/bench_launches.py [--batch 8] [--size 640] [--gts 10]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.launches import gpu_code_paths, loss_path_ops  # noqa: E402
from detengine.models import build_detector  # noqa: E402
from detengine.train.runner import load_cfg  # noqa: E402

CASES = [("retinanet_r50_fpn_coco", 640), ("fcos_r50_fpn_coco", 640), ("atss_r50_fpn_coco", 640),
         ("gfl_r50_fpn_coco", 640), ("tood_r50_fpn_coco", 640), ("rtmdet_tiny_coco", 640),
         ("yolox_s_coco", 640), ("ssd300_coco", 300), ("ssd512_coco", 512), ("tinyssd_synthetic", 256)]
US_PER_LAUNCH = (14.0, 40.0)


def batch(n: int, size: int, num_gt: int) -> dict:
    g = torch.Generator().manual_seed(0)
    boxes, labels = [], []
    for _ in range(n):
        xy = torch.rand(num_gt, 2, generator=g) * size * 0.6
        wh = size * 0.05 + torch.rand(num_gt, 2, generator=g) * size * 0.3
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, 20, (num_gt,), generator=g))
    return {"images": torch.randn(n, 3, size, size, generator=g), "gt_boxes": boxes, "gt_labels": labels}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=None, help="image size (default: each config's own)")
    ap.add_argument("--gts", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"{'detector':24s} {'fixed':>6s} {'per image':>9s} {'batch ' + str(args.batch):>8s} {'syncs':>6s} "
          f"{'copies':>7s}  est. on a GPU at {US_PER_LAUNCH[0]:.0f}-{US_PER_LAUNCH[1]:.0f} µs/launch")
    for name, size in CASES:
        size = args.size or size
        cfg = load_cfg(ROOT / "resources" / "configs" / f"{name}.py")["model"]
        cfg["bbox_head"]["num_classes"] = 20
        cfg.get("backbone", {}).pop("init_cfg", None)
        torch.manual_seed(0)
        model = build_detector(cfg).train()
        with gpu_code_paths():      # two and three images: a training step's batch path (one image: per image)
            loss_path_ops(model, batch(2, size, args.gts))                 # fills the prior caches
            two = loss_path_ops(model, batch(2, size, args.gts))
            three = loss_path_ops(model, batch(3, size, args.gts))
        per_image = three.kernels - two.kernels
        fixed = two.kernels - 2 * per_image
        total = fixed + per_image * args.batch

        def of_batch(count):                     # a count at batch 2 and 3, extrapolated to the batch
            return count(two) + (count(three) - count(two)) * (args.batch - 2)
        syncs = of_batch(lambda c: c.syncs)
        copies = of_batch(lambda c: c.host_copies)
        print(f"{name:24s} {fixed:6d} {per_image:9d} {total:8d} {syncs:6d} {copies:7d}  "
              f"{total * US_PER_LAUNCH[0] / 1000:5.0f}-{total * US_PER_LAUNCH[1] / 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
