"""The per-GT probe during training (detengine/probe.py, issue "What no tool shows", part 1) as a
ratio to a training step. A step (forward, loss, backward, SGD on a fixed batch at the config's
input size, no data loading) and one probe (16 images through the test pipeline's cached inputs,
the model in eval mode without gradients, the head's targets and loss per image, the per-GT
records; not written) are timed separately and interleaved, medians. The trainer probes every
``probe.interval`` iterations (auto: min(50, iterations per epoch)); the goal is a probe of at
most about one step, i.e. <= 2 % of the training time at interval 50.

    .venv/bin/python bench/bench_probe.py [--reps 5] [--threads 2] [--device cpu|cuda] [--cases NAME ...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.data.folder import DetectionSample  # noqa: E402
from detengine.models import build_detector  # noqa: E402
from detengine.probe import TrainingProbe  # noqa: E402
from detengine.train.data import Collate, test_pipeline_for  # noqa: E402
from detengine.train.runner import load_cfg  # noqa: E402

# (config, training batch, the images' original size (w, h)); the step runs at the test pipeline's size
CASES = {"tinyssd_synthetic": (8, (128, 128)), "ssd300_coco": (8, (640, 480)), "rtmdet_tiny_coco": (8, (640, 480)),
         "retinanet_r50_fpn_coco": (2, (1333, 800)), "atss_r50_fpn_coco": (2, (1333, 800))}


class RandomImages:
    """A dataset of seeded noise images of one size, 3-8 boxes each (what the probe reads)."""

    class_names = [f"c{i}" for i in range(20)]

    def __init__(self, n: int, size: tuple[int, int], seed: int = 0):
        self.n, (self.w, self.h), self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def load_sample(self, index: int) -> DetectionSample:
        g = np.random.default_rng([self.seed, index])
        k = int(g.integers(3, 9))
        xy = g.random((k, 2)) * np.array([self.w, self.h]) * 0.7
        wh = np.array([self.w, self.h]) * (0.03 + g.random((k, 2)) * 0.3)
        boxes = np.concatenate([xy, np.minimum(xy + wh, [self.w, self.h])], 1).astype(np.float32)
        image = g.integers(0, 255, (self.h, self.w, 3), dtype=np.uint8)
        return DetectionSample(image, boxes, g.integers(0, 20, k).astype(np.int64), image_id=index + 1,
                               file_name=f"{index:06d}.jpg", ori_shape=(self.h, self.w))


def case(name: str, device: torch.device, folder: Path):
    """(a training step -> seconds, a probe -> seconds, the probe's GT count)."""
    batch_size, size = CASES[name]
    cfg = load_cfg(ROOT / "resources" / "configs" / f"{name}.py")
    cfg["model"]["bbox_head"]["num_classes"] = 20
    model = build_detector(cfg["model"]).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    dataset = RandomImages(64, size)
    pipeline = test_pipeline_for(cfg)
    divisor = (cfg["model"].get("data_preprocessor") or {}).get("pad_size_divisor")
    collate = Collate(size_divisor=divisor if divisor and divisor > 1 else None)
    samples = []
    for i in range(batch_size):                    # the step's batch: the test pipeline's geometry
        s = dataset.load_sample(i)
        samples.append(pipeline({"image": s.image, "boxes": s.boxes, "labels": s.labels,
                                 "ignore_boxes": np.zeros((0, 4), np.float32),
                                 "meta": {"ori_shape": s.ori_shape, "img_shape": s.ori_shape,
                                          "homography": np.eye(3)}}))
    batch = collate(samples)
    batch["images"] = batch["images"].to(device)
    batch["gt_boxes"] = [b.to(device) for b in batch["gt_boxes"]]
    batch["gt_labels"] = [b.to(device) for b in batch["gt_labels"]]
    batch.pop("gt_boxes_ignore", None)
    probe = TrainingProbe(folder / name, dataset, pipeline, interval=50, images=16,
                          size_divisor=collate.size_divisor, batch_size=batch_size)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        model.train()
        outputs = model(batch["images"])
        losses, _ = model.loss_from_outputs(batch, outputs)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        sync()
        return time.perf_counter() - t0

    def run_probe() -> float:
        sync()
        t0 = time.perf_counter()
        probe.measure(model)
        sync()
        return time.perf_counter() - t0
    step.model, step.probe, step.cfg, step.dataset = model, probe, cfg, dataset
    return step, run_probe, probe.num_gts, tuple(batch["images"].shape[-2:])


def check_trace(step) -> str:
    """The probe's records (on the bench's device) against the debug trace of a CPU copy of the
    same weights (ImageTracer: what the window shows); positives compared exactly, losses relatively."""
    import copy

    from detengine.image_trace import ImageTracer
    records = step.probe.measure(step.model)
    cpu_model = copy.deepcopy(step.model).cpu()
    tracer = ImageTracer(step.cfg, model=cpu_model)
    by_key = {(r["image"], r["gt"]): r for r in records}
    same_pos, worst = 0, 0.0
    for n, im in enumerate(step.probe.images):
        trace = tracer.trace(n, step.dataset.load_sample(im.index).image, im.boxes, im.labels).trace
        for k in range(len(im.boxes)):
            r, mine = by_key[(n, k)], trace.assign_result.gt_inds == k + 1
            same_pos += r["pos"] == int(mine.sum())
            if r["pos"] and r["pos"] == int(mine.sum()):
                for key, per_prior in (("cls", trace.loss.cls_per_prior), ("box", trace.loss.bbox_per_prior)):
                    ref = float(per_prior[mine].mean())
                    worst = max(worst, abs(r[key] - ref) / max(abs(ref), 1e-12))
    return f"positives equal for {same_pos} of {len(records)} GTs, largest relative loss difference {worst:.2e}"


def train_check(device: torch.device, folder: Path) -> str:
    """A short real run on ``device`` with the probe every 5 iterations: records and probe events."""
    import json

    from detengine.train.events import read_jsonl
    from detengine.train.runner import train_from_config
    sys.path.insert(0, str(ROOT))
    from tests.engine.runs import tiny_tinyssd_cfg
    cfg = tiny_tinyssd_cfg(folder / "data")
    cfg["probe"] = {"interval": 5, "images": 8}
    cfg["train_cfg"] = {"type": "EpochBasedTrainLoop", "max_epochs": 10, "val_begin": 100}
    run = folder / "run"
    train_from_config(cfg, work_dir=str(run), console=False, device=str(device))
    iters = sorted({json.loads(line)["iter"] for line in (run / "probe.jsonl").read_text().splitlines()})
    probes = [e for e in read_jsonl(run / "log.jsonl") if e["type"] == "probe"]
    steps = [e for e in read_jsonl(run / "log.jsonl") if e["type"] == "iter"]
    step_s = statistics.median(e["images_per_s"] and 6 / e["images_per_s"] for e in steps[2:])
    return (f"iterations probed {iters}; probe {statistics.median(e['seconds'] for e in probes[1:]) * 1000:.1f} ms, "
            f"step {step_s * 1000:.1f} ms (median)")


def measure(name: str, device: torch.device, tmp: Path, args) -> None:
    """One case: the RATIO line (and the CHECK line with ``--check-trace``)."""
    step, run_probe, gts, shape = case(name, device, tmp)
    step(), run_probe(), step(), run_probe()          # warm-up (cuDNN, the probe's cached inputs)
    steps, probes = [], []
    for _ in range(args.reps):
        steps.append(step())
        probes.append(run_probe())
    s, q = statistics.median(steps), statistics.median(probes)
    print(f"RATIO {name:<24} batch {CASES[name][0]} at {shape[1]}x{shape[0]}: step {s * 1000:8.1f} ms, "
          f"probe ({gts} GTs) {q * 1000:8.1f} ms = {q / s:.2f} steps; at interval 50 "
          f"{100 * q / s / 50:.2f} % of the training time")
    if args.check_trace:
        print(f"CHECK {name}: {check_trace(step)}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", nargs="+", default=["tinyssd_synthetic", "ssd300_coco", "rtmdet_tiny_coco"])
    p.add_argument("--check-trace", action="store_true", help="also compare each case's records with the trace")
    p.add_argument("--train-check", action="store_true", help="also a short real run with the probe on --device")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} torch threads"
    print(f"commit {commit}, {device} ({where}), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"a probe of 16 images against a training step, medians of {args.reps}")
    with tempfile.TemporaryDirectory(prefix="detscope-bench-probe-") as tmp:
        for name in args.cases:
            try:
                measure(name, device, Path(tmp), args)
            except Exception as exc:                   # one broken case does not cost the others (device time)
                print(f"FAILED {name}: {type(exc).__name__}: {exc}")
        if args.train_check:
            print(f"TRAIN {device}: {train_check(device, Path(tmp))}")


if __name__ == "__main__":
    main()
