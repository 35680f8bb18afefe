"""Training steps of the shipped RetinaNet and RTMDet next to their closest peers, and how much of
each step is the network (forward + backward of backbone, neck and head) rather than DetScope's
own work (priors, assignment, targets, losses).

* RetinaNet R50-FPN, 640x640, batch 2, 20 classes: ours (the shipped config, random backbone)
  vs torchvision ``retinanet_resnet50_fpn(weights=None, weights_backbone=None,
  trainable_backbone_layers=3)`` (its transform fixed at 640: ``min_size=max_size=640``).
* RTMDet-tiny, 640x640, batch 2: ours vs mmdetection 3.3.0's when ``mmdet`` imports (run with the
  reference venv of tests/engine/fixtures/README.md); otherwise ours alone.
* "network only": the same model's forward, a backward of the sum of its outputs and the SGD
  update: the step without DetScope's own work (priors, assignment, targets, loss).

One step = forward, loss, backward, SGD update on a fixed batch (no data loading). Interleaved,
medians, 2 torch threads by default.

    .venv/bin/python bench/bench_train_steps.py [--reps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
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


def _ours(name: str, size: int, batch: int):
    cfg = load_cfg(ROOT / "resources" / "configs" / f"{name}.py")["model"]
    cfg["bbox_head"]["num_classes"] = 20
    cfg["backbone"].pop("init_cfg", None)
    model = build_detector(cfg).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    images, boxes, labels = make_batch(batch, size)
    data = {"images": images, "gt_boxes": boxes, "gt_labels": labels}

    def step():
        losses, _ = model.loss(data)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()

    def network():                     # all but DetScope's own work: the same update, no loss
        cls, reg, _ = model(images)
        opt.zero_grad()
        (cls.float().sum() + reg.float().sum()).backward()
        opt.step()

    with torch.no_grad():
        cls, reg, sizes = model(images)
    cls, reg = cls.detach().requires_grad_(), reg.detach().requires_grad_()

    def loss_path():                   # DetScope's own work alone: priors, targets, losses, their backward
        cls.grad = reg.grad = None     # down to the head's outputs (given the outputs, no network)
        losses, _ = model.loss_from_outputs(data, (cls, reg, sizes))
        sum(losses.values()).backward()
    return step, network, loss_path


def _torchvision_retinanet(size: int, batch: int):
    from torchvision.models.detection import retinanet_resnet50_fpn
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=21, trainable_backbone_layers=3,
                                   min_size=size, max_size=size).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    images, boxes, labels = make_batch(batch, size)
    targets = [{"boxes": b, "labels": lab + 1} for b, lab in zip(boxes, labels)]

    def step():
        losses = model(list(images), targets)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    return step


def _mmdet_rtmdet(size: int, batch: int):
    try:
        sys.path.insert(0, str(ROOT / "tests" / "engine" / "fixtures"))
        sys.path.insert(0, str(ROOT / "tests" / "engine"))
        import make_mmdet_reference  # noqa: F401  (the mmcv._ext stub)
        from mmdet.registry import MODELS
        from mmdet.structures import DetDataSample
        from mmdet.utils import register_all_modules
        from mmdet_layout_configs import CONFIGS
        from mmengine.structures import InstanceData
    except ImportError:
        return None
    register_all_modules()
    cfg = copy.deepcopy(CONFIGS["rtmdet_tiny_8xb32-300e_coco"])
    cfg["bbox_head"]["num_classes"] = 20
    cfg["backbone"].pop("init_cfg", None)
    for part in ("backbone", "neck", "bbox_head"):
        cfg[part]["norm_cfg"] = dict(type="BN")                      # SyncBN needs a process group
    model = MODELS.build(cfg)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images, boxes, labels = make_batch(batch, size)
    samples = []
    for b, lab in zip(boxes, labels):
        s = DetDataSample(metainfo={"img_shape": (size, size), "pad_shape": (size, size),
                                    "batch_input_shape": (size, size)})
        s.gt_instances = InstanceData(bboxes=b, labels=lab)
        samples.append(s)

    def step():
        losses = model.loss(images, samples)
        opt.zero_grad()
        sum(v if torch.is_tensor(v) else sum(v) for v in losses.values()).backward()
        opt.step()
    return step


def _time(sides: dict, reps: int) -> dict:
    for fn in sides.values():
        fn()                                                          # warm-up
    times = {k: [] for k in sides}
    names = list(sides)
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            sides[k]()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}; {args.threads} threads; {args.reps} interleaved rounds, medians; batch 2 at 640x640")
    step, net, _ = _ours("retinanet_r50_fpn_coco", 640, 2)
    t = _time({"ours": step, "ours network only": net, "torchvision": _torchvision_retinanet(640, 2)}, args.reps)
    print(f"RetinaNet R50-FPN: ours {t['ours']:.2f} s, torchvision {t['torchvision']:.2f} s per step: "
          f"torchvision/ours {t['torchvision'] / t['ours']:.2f}x; outside the network "
          f"{max(0.0, 1 - t['ours network only'] / t['ours']) * 100:.1f}% of ours")
    step, net, _ = _ours("rtmdet_tiny_coco", 640, 2)
    sides = {"ours": step, "ours network only": net}
    peer = _mmdet_rtmdet(640, 2)
    if peer is not None:
        sides["mmdetection"] = peer
    t = _time(sides, args.reps)
    line = f"RTMDet-tiny: ours {t['ours']:.2f} s per step"
    if peer is not None:
        line += f", mmdetection {t['mmdetection']:.2f} s: mmdetection/ours {t['mmdetection'] / t['ours']:.2f}x"
    else:
        line += " (mmdetection not importable here: run with the reference venv for the peer)"
    print(line + f"; outside the network {max(0.0, 1 - t['ours network only'] / t['ours']) * 100:.1f}% of ours")


if __name__ == "__main__":
    main()
