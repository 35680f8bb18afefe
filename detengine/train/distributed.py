"""torchrun support: process group set-up, sharding, gathering. One process: all no-ops."""
from __future__ import annotations

import gc
import os
from datetime import timedelta

import torch
import torch.distributed as tdist
from torch import nn

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "is_main", "shard", "wrap_model",
           "all_gather_objects", "broadcast_object", "reduce_mean", "any_rank", "broadcast_buffers", "barrier",
           "cleanup"]


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or tdist.is_initialized():
        return tdist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend=backend, timeout=timedelta(minutes=10))
    return True


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def shard(indices: list[int], world: int | None = None, this_rank: int | None = None) -> list[int]:
    """Rank ``this_rank``'s share (default: this process's) of ``indices`` among ``world`` ranks
    (default: the process group's), padded by repetition to equal length (DistributedSampler)."""
    n = world_size() if world is None else int(world)
    if n == 1:
        return list(indices)
    total = -(-len(indices) // n) * n
    padded = (list(indices) * (total // max(len(indices), 1) + 1))[:total]
    return padded[(rank() if this_rank is None else int(this_rank))::n]


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else the model itself."""
    if not is_distributed():
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def all_gather_objects(obj) -> list:
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def _comm_device() -> torch.device:
    """Where collective tensors must live: this rank's GPU under nccl, else the CPU."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (mmdetection's ``reduce_mean``), on ``tensor``'s
    device; itself when alone. A NaN on any rank makes the result NaN on every rank."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_comm_device(), copy=True)
    tdist.all_reduce(out.div_(world_size()), op=tdist.ReduceOp.SUM)
    return out.to(tensor.device)


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """For each flag: True on every rank when it is true on any rank (alone: the flags)."""
    if not is_distributed():
        return tuple(bool(f) for f in flags)
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=_comm_device())
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). torch's DDP broadcasts
    them at the start of each training forward, so after the last step each rank's differ by its
    own batch; before evaluating, all ranks take rank 0's, the ones its checkpoint saves. (A
    deliberate difference: mmengine wraps with ``broadcast_buffers=False`` and evaluates each
    shard with that rank's own statistics, which no checkpoint holds.)"""
    if not is_distributed():
        return
    for buf in module.buffers():
        tdist.broadcast(buf, src=0)


def barrier() -> None:
    if is_distributed():
        tdist.barrier()


def cleanup() -> None:
    """Tear the process group down. Whatever still holds it (a DDP model in a reference cycle) is
    collected first, so the group's gloo threads end here and not while the interpreter shuts down
    (too late: the process aborts with "terminate called without an active exception")."""
    if is_distributed():
        gc.collect()
        tdist.destroy_process_group()
        gc.collect()
