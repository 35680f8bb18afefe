"""On a CUDA GPU: training steps of the shipped detectors next to their closest peers (fp32 and
mixed precision), and the NMS stage with its suppression record at 50,000 candidates against
torchvision's ``batched_nms`` on the same GPU.

* RetinaNet R50-FPN, 640x640, batch 8, 20 classes: ours vs torchvision ``retinanet_resnet50_fpn``.
* FCOS R50-FPN, 640x640, batch 8: ours vs torchvision ``fcos_resnet50_fpn``.
* SSD300, batch 32: ours vs torchvision ``ssd300_vgg16``.
* RTMDet-tiny, 640x640, batch 32: ours alone (no mmdetection on the GPU machine).
* "network only": the same model's forward, a backward of its outputs' sum and the update: the
  step without DetScope's own work (priors, assignment, targets, loss).

One step = forward, loss, backward, SGD update on a fixed batch already on the GPU; each timed
with ``torch.cuda.synchronize()`` around it; sides interleaved, medians. AMP = ``torch.autocast``
float16 with a ``GradScaler``, as the trainer's ``--amp``.

    python bench/bench_cuda.py [--reps 10] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_nms_record import clustered  # noqa: E402
from bench_train import make_batch  # noqa: E402

from detengine.models import build_detector  # noqa: E402
from detengine.postprocess import _nms_stages  # noqa: E402
from detengine.train.runner import load_cfg  # noqa: E402

DEV = torch.device("cuda")


def _on(images, boxes, labels):
    return images.to(DEV), [b.to(DEV) for b in boxes], [lab.to(DEV) for lab in labels]


def _update(loss_fn, params, amp: bool):
    """A step function: loss, backward (scaled under AMP), SGD update."""
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(DEV.type, enabled=amp)

    def step():
        with torch.autocast(DEV.type, dtype=torch.float16, enabled=amp):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss.float()).backward()
        scaler.step(opt)
        scaler.update()
    return step


def ours(name: str, size: int, batch: int, amp: bool):
    cfg = load_cfg(ROOT / "resources" / "configs" / f"{name}.py")["model"]
    cfg["bbox_head"]["num_classes"] = 20
    cfg.get("backbone", {}).pop("init_cfg", None)
    model = build_detector(cfg).to(DEV).train()
    params = [p for p in model.parameters() if p.requires_grad]
    images, boxes, labels = _on(*make_batch(batch, size))
    data = {"images": images, "gt_boxes": boxes, "gt_labels": labels}

    def loss():
        losses, _ = model.loss(data)
        return sum(losses.values())

    def net_loss():
        cls, reg, _ = model(images)
        return cls.float().sum() + reg.float().sum()
    return _update(loss, params, amp), _update(net_loss, params, amp)


def torchvision_model(kind: str, size: int, batch: int, amp: bool):
    from torchvision.models import detection as tvd
    kw = dict(weights=None, weights_backbone=None, num_classes=21)
    if kind == "ssd300":
        model = tvd.ssd300_vgg16(**kw)
    elif kind == "retinanet":
        model = tvd.retinanet_resnet50_fpn(**kw, trainable_backbone_layers=3, min_size=size, max_size=size)
    else:
        model = tvd.fcos_resnet50_fpn(**kw, trainable_backbone_layers=3, min_size=size, max_size=size)
    model = model.to(DEV).train()
    images, boxes, labels = _on(*make_batch(batch, size))
    targets = [{"boxes": b, "labels": lab + 1} for b, lab in zip(boxes, labels)]
    image_list = list(images)

    def loss():
        return sum(model(image_list, targets).values())
    return _update(loss, [p for p in model.parameters() if p.requires_grad], amp)


def _sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> float:
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def interleaved(sides: dict, reps: int, warmup: int = 2) -> dict:
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    names, times = list(sides), {k: [] for k in sides}
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            times[k].append(timed(sides[k]))
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


CASES = [("retinanet_r50_fpn_coco", "retinanet", 640, 8), ("fcos_r50_fpn_coco", "fcos", 640, 8),
         ("ssd300_coco", "ssd300", 300, 32), ("rtmdet_tiny_coco", None, 640, 32)]
AMP = (False, True)


def train_rows(reps: int) -> list[dict]:
    rows = []
    for name, peer, size, batch in CASES:
        for amp in AMP:
            step, net = ours(name, size, batch, amp)
            sides = {"ours": step, "network": net}
            if peer:
                sides["peer"] = torchvision_model(peer, size, batch, amp)
            t = interleaved(sides, reps)
            row = {"detector": name, "batch": batch, "size": size, "amp": amp, "ours_ms": t["ours"],
                   "network_ms": t["network"], "outside_network": max(0.0, 1 - t["network"] / t["ours"])}
            if peer:
                row.update(peer=f"torchvision {peer}", peer_ms=t["peer"], ratio=t["peer"] / t["ours"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            if DEV.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def nms_rows(reps: int) -> list[dict]:
    from torchvision.ops import batched_nms
    rows = []
    for n in (3500, 50_000):
        boxes, scores, labels = (t.to(DEV) for t in clustered(n))
        prior_idx = torch.arange(n, device=DEV)

        def record(keep=True):
            return _nms_stages(boxes, scores, labels, prior_idx, 0, 0.5, 100, class_agnostic=False, counts={},
                               record=keep)

        def free():
            record(False)

        def peer():
            batched_nms(boxes, scores, labels, 0.5)
        t = interleaved({"record": record, "free": free, "tv": peer}, reps)
        row = {"candidates": n, "record_ms": t["record"], "free_ms": t["free"], "tv_ms": t["tv"],
               "record_vs_tv": t["record"] / t["tv"], "free_vs_tv": t["free"] / t["tv"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--only", nargs="+", default=None, help="training rows of these configs only (e.g. retinanet_r50_fpn_coco)")
    ap.add_argument("--dry-run-cpu", action="store_true", help="check the script on the CPU (tiny, no AMP)")
    args = ap.parse_args()
    global DEV, CASES, AMP
    if args.dry_run_cpu:
        DEV, AMP = torch.device("cpu"), (False,)
        CASES = [(name, peer, 300 if "ssd300" in name else 128, 1) for name, peer, _, _ in CASES]
    elif not torch.cuda.is_available():
        sys.exit("bench_cuda.py needs a CUDA GPU (--dry-run-cpu checks the script on the CPU)")
    if args.only:
        CASES = [case for case in CASES if case[0] in args.only]
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name() if DEV.type == "cuda" else "cpu (dry run)"
    meta = {"gpu": gpu, "torch": torch.__version__, "reps": args.reps,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(meta), flush=True)
    out = {"meta": meta, "nms": nms_rows(max(args.reps * 3, 20))}
    if not args.skip_train:
        out["train"] = train_rows(args.reps)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
