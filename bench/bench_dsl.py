"""Benchmark: RTMDet's DynamicSoftLabelAssigner (the training hot path: per image, every step)
against mmdetection's.

Inputs: RTMDet's 8,400 point priors (640x640, strides 8/16/32), 80 classes, logits N(-3, 2),
decoded boxes around each prior (0.5-3 strides per side), and 20 or 100 GTs (random boxes of
4-204 px in the image). The peer is mmdetection 3.3.0's ``DynamicSoftLabelAssigner`` when
``mmdet`` imports (run with the reference venv of tests/engine/fixtures/README.md, which sees
this checkout through a .pth file); otherwise its algorithm as DetScope ran it before (the (V, G, C)
soft-label cost of mmdetection, ``--peer transcription``), printed as such. Both sides are
interleaved, 1 torch thread, medians; the assignments are checked equal first.

    /tmp/mmref/bin/python bench/bench_dsl.py          # against mmdetection
    .venv/bin/python bench/bench_dsl.py               # against the transcription
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.assigners import DynamicSoftLabelAssigner  # noqa: E402
from detengine.priors import MlvlPointGenerator  # noqa: E402


class _Transcription(DynamicSoftLabelAssigner):
    """mmdetection's cost as written there: the (V, G, C) soft-label BCE summed over classes."""

    @staticmethod
    def _cls_cost(scores, gt_labels, ious):
        v, g = ious.shape
        onehot = F.one_hot(gt_labels.to(torch.int64), scores.shape[-1]).float().unsqueeze(0).repeat(v, 1, 1)
        s = scores.unsqueeze(1).repeat(1, g, 1)
        soft = onehot * ious[..., None]
        return (F.binary_cross_entropy_with_logits(s, soft, reduction="none") * (soft - s.sigmoid()).abs().pow(2)).sum(-1)


def _peer():
    try:
        sys.path.insert(0, str(ROOT / "tests" / "engine" / "fixtures"))
        import make_mmdet_reference  # noqa: F401  (the mmcv._ext stub)
        from mmdet.models.task_modules.assigners import DynamicSoftLabelAssigner as MMDet
        from mmengine.structures import InstanceData
    except ImportError:
        t = _Transcription(soft_center_radius=3.0, topk=13, iou_weight=3.0)
        return "mmdetection's algorithm transcribed (no mmdet here)", \
            lambda pri, gt, lab, sc, pb: t.assign(pri, gt, lab, pred_scores=sc, pred_boxes=pb).gt_inds
    m = MMDet(soft_center_radius=3.0, topk=13, iou_weight=3.0)
    return "mmdetection 3.3.0", lambda pri, gt, lab, sc, pb: m.assign(
        InstanceData(priors=pri, scores=sc, bboxes=pb), InstanceData(bboxes=gt, labels=lab)).gt_inds


def measure(num_gt: int, reps: int = 30, peer=None) -> dict:
    """One size: 8,400 priors x ``num_gt`` GTs, ours and ``peer`` (default: :func:`_peer`'s)
    interleaved; medians in ms and whether the assignments are equal."""
    peer = peer or _peer()[1]
    ours = DynamicSoftLabelAssigner(soft_center_radius=3.0, topk=13, iou_weight=3.0)
    pri = MlvlPointGenerator(strides=[8, 16, 32], offset=0).grid_priors([(80, 80), (40, 40), (20, 20)]).tensor
    g = torch.Generator().manual_seed(num_gt)
    xy = torch.rand(num_gt, 2, generator=g) * 600
    gt = torch.cat([xy, xy + torch.rand(num_gt, 2, generator=g) * 200 + 4], 1)
    lab = torch.randint(0, 80, (num_gt,), generator=g)
    sc = torch.randn(len(pri), 80, generator=g) * 2 - 3
    d = (0.5 + 2.5 * torch.rand(len(pri), 4, generator=g)) * pri[:, 2:3]
    pb = torch.cat([pri[:, :2] - d[:, :2], pri[:, :2] + d[:, 2:]], 1)
    same = torch.equal(peer(pri, gt, lab, sc, pb), ours.assign(pri, gt, lab, pred_scores=sc, pred_boxes=pb).gt_inds)
    times = {"peer": [], "ours": []}
    for r in range(reps):
        for side in (("peer", "ours") if r % 2 else ("ours", "peer")):
            t = time.perf_counter()
            if side == "peer":
                peer(pri, gt, lab, sc, pb)
            else:
                ours.assign(pri, gt, lab, pred_scores=sc, pred_boxes=pb)
            times[side].append(time.perf_counter() - t)
    return dict(num_priors=len(pri), num_gt=num_gt, reps=reps, same=same,
                peer_ms=statistics.median(times["peer"]) * 1e3, ours_ms=statistics.median(times["ours"]) * 1e3)


def main(reps: int = 30) -> None:
    torch.set_num_threads(1)
    name, peer = _peer()
    print(f"peer: {name}; 1 torch thread; {reps} interleaved rounds, medians")
    for num_gt in (20, 100):
        m = measure(num_gt, reps, peer)
        p, o = m["peer_ms"], m["ours_ms"]
        print(f"8400 priors x {num_gt:3d} GT: peer {p:8.2f} ms  DetScope {o:7.2f} ms  "
              f"peer/DetScope {p / o:5.2f}x  same assignment: {m['same']}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
