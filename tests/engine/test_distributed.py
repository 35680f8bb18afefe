"""The collective helpers under a real 2-process gloo group (torch.multiprocessing, no torchrun):
the ranks agree on RTMDet's loss normaliser, on the buffers they evaluate with, on NaN losses
and on a stop request that reached one of them."""
from __future__ import annotations

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from detengine.heads.rtmdet import RTMDetHeadCore
from detengine.train import distributed as dist


def _worker(rank: int, init_file: str, results) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        # each rank matched a different total IoU; mmdetection divides both by the mean
        factor = RTMDetHeadCore.reduce_avg_factor([1.5 + 2.0 * rank, 0.25], across_ranks=True)
        alone = RTMDetHeadCore.reduce_avg_factor([1.5 + 2.0 * rank, 0.25])  # a loss on one rank: no collective
        # each rank's BatchNorm saw its own batch last; evaluation must use rank 0's statistics
        bn = nn.BatchNorm2d(3)
        bn.running_mean.fill_(float(rank + 1))
        bn.num_batches_tracked.fill_(10 + rank)
        dist.broadcast_buffers(bn)
        losses = dist.reduce_mean(torch.tensor([1.0, float("nan") if rank == 1 else 2.0]))
        stop = dist.any_rank(rank == 1, False)  # a stop seen by rank 1 only; a pause seen by none
        results[rank] = (factor + 100 * (alone != 1.75 + 2.0 * rank), bn.running_mean.tolist(), int(bn.num_batches_tracked), losses.tolist(), stop)
    finally:
        tdist.destroy_process_group()


def test_two_ranks_agree(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(str(tmp_path / "init"), results), nprocs=2, join=True)
    (f0, mean0, n0, l0, s0), (f1, mean1, n1, l1, s1) = results[0], results[1]
    assert s0 == s1 == (True, False)
    assert f0 == f1 == (1.75 + 3.75) / 2  # mean over ranks of each rank's sum
    assert mean0 == mean1 == [1.0, 1.0, 1.0] and n0 == n1 == 10
    assert l0[0] == l1[0] == 1.0 and all(v != v for v in (l0[1], l1[1]))  # NaN anywhere: NaN everywhere
