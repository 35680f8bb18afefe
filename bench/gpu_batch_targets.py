"""On a CUDA GPU: a training step's targets of the whole batch in one pass (``HeadCore.batch_targets``,
the path a GPU step takes) against each image's own targets, both on the GPU, for every shipped detector
on tests/engine/test_batch_targets.py's awkward batches (identical boxes, boxes on the anchor grid,
zero-area boxes, images without boxes, padding). The CPU suite checks the same with the GPU's code paths;
here CUDA's own kernels decide (its top-k, argmax and reductions), which no CPU run can show. Prints one
line per detector (images the batch pass left to their own assignment, the first difference); exits 1
on any difference.

    python bench/gpu_batch_targets.py [--device cuda]      (--device cpu: a dry run of the script)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.heads.base import valid_region  # noqa: E402
from tests.engine.test_batch_targets import _assert_same, _batch, _core, _spy  # noqa: E402

# (config, image size, boxes per image); TOOD in both stages
CASES = [("retinanet_r50_fpn_coco", 320, [7, 0, 2, 1, 30]), ("ssd300_coco", 300, [7, 0, 2, 1, 30]),
         ("fcos_r50_fpn_coco", 256, [9, 2, 0, 4]), ("atss_r50_fpn_coco", 256, [9, 2, 0, 4]),
         ("gfl_r50_fpn_coco", 256, [9, 2, 0, 4]), ("tood_r50_fpn_coco", 256, [9, 2, 0, 4]),
         ("tood_r50_fpn_coco@initial", 256, [9, 2, 0, 4]), ("rtmdet_tiny_coco", 320, [7, 0, 2, 1, 30, 12]),
         ("yolox_tiny_coco", 256, [9, 0, 4, 1, 17]), ("tinyssd_synthetic", 128, [9, 0, 4, 17])]


def check(name: str, size: int, counts, seed: int, dev: torch.device) -> tuple[int, str]:
    """(images left to their own assignment, "" or the first difference) of one batch."""
    config, _, stage = name.partition("@")
    core = _core(config)
    if stage == "initial":
        core.set_epoch(0)
    data = _batch(size, counts, seed=seed)
    shape = (size, size)
    metas = [{} for _ in counts] if config.startswith("yolox") else data["metas"]
    priors = [core.priors(shape, pad_shape=valid_region(m, shape) if m else None, device=dev) for m in metas]
    shapes = [m.get("img_shape", shape) for m in metas]
    g = torch.Generator().manual_seed(seed)
    n, a = len(priors), len(priors[0])
    cls = (torch.randn(n, a, core.cls_channels(), generator=g) * 2).to(dev)
    reg = (torch.randn(n, a, 4, generator=g) * 0.3).to(dev)
    boxes = [b.to(dev) for b in data["gt_boxes"]]
    labels = [lb.to(dev) for lb in data["gt_labels"]]
    own = [core.targets(p, b, lb, s, cls_scores=c, bbox_preds=r)
           for p, b, lb, s, c, r in zip(priors, boxes, labels, shapes, cls, reg)]
    calls = _spy(getattr(core, "active_assigner", core.assigner))
    batched = core.batch_targets(priors, boxes, labels, shapes, None, cls, reg)
    try:
        _assert_same(core, own, batched)
    except AssertionError as e:
        return len(calls), str(e).splitlines()[0][:160]
    return len(calls), ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device(args.device)
    print(f"batch targets against each image's own on {dev} "
          f"({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'})")
    failed = 0
    for name, size, counts in CASES:
        alone, diffs = 0, []
        for seed in range(args.seeds):
            n, diff = check(name, size, counts, seed, dev)
            alone += n
            if diff:
                diffs.append(f"seed {seed}: {diff}")
        failed += bool(diffs)
        print(f"{name:28s} {'DIFFERS' if diffs else 'same'}  ({alone} of {args.seeds * len(counts)} images "
              f"assigned on their own){'; ' + diffs[0] if diffs else ''}", flush=True)
    print("all the same" if not failed else f"{failed} detector(s) differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
