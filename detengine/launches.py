"""Counting the tensor operations (≈ GPU kernel launches) and host syncs of a training step's loss
path, outside the network: priors, assignment, targets, losses and their backward.

On a GPU each operation costs a launch (14-40 µs measured on an H200 host, bench/RESULTS.md) whatever
its size, so a loss path that loops over blocks of priors or over boxes is launch-bound there while
it looks free on a CPU. Counting on the CPU, with the GPU's code paths taken, finds that without a GPU:
``bench/bench_launches.py`` prints it for every shipped detector, and a test keeps the count from
growing with the number of priors or of boxes."""
from __future__ import annotations

import collections
import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import transfers

# operations that launch no kernel (views, metadata, allocation)
_NO_KERNEL = frozenset("""select detach lift_fresh unsqueeze expand view squeeze unbind slice as_strided alias t
transpose permute _reshape_alias split split_with_sizes chunk unfold narrow _unsafe_view diagonal expand_as view_as
reshape flatten movedim set_ new_empty empty empty_like new_empty_strided empty_strided""".split())
# operations that wait for the device (a value or a size the host needs)
_SYNCS = frozenset("_local_scalar_dense nonzero is_nonzero masked_select _unique2 unique_consecutive unique_dim".split())


class OpCounter(TorchDispatchMode):
    """Counts ATen operations by name (views and allocations left out) and host syncs."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()
        self.lifted = 0

    def __enter__(self):
        self._pinned = -transfers.host_copies
        return super().__enter__()

    def __exit__(self, *exc):
        self._pinned += transfers.host_copies
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in _NO_KERNEL:
            self.ops[name] += 1
        elif name == "lift_fresh" and args[0].dim() > 0:
            self.lifted += 1
        return func(*args, **(kwargs or {}))

    @property
    def host_copies(self) -> int:
        """Tensors made from host numbers (``torch.tensor(list)``, ``new_tensor``) less
        :func:`~detengine.transfers.host_values`' own: on a GPU each is a blocking copy, a host sync, where it goes to the
        device (one made for the host alone, a float32 normaliser, counts too: an upper bound)."""
        return self.lifted - self._pinned

    @property
    def kernels(self) -> int:
        return sum(self.ops.values())

    @property
    def syncs(self) -> int:
        return sum(n for k, n in self.ops.items() if k in _SYNCS)


@contextlib.contextmanager
def gpu_code_paths():
    """Take the code paths a GPU takes while running on the CPU (the CPU-only row blocks and per-class
    NMS off, the batch's targets in one pass)."""
    from . import losses, postprocess
    from .heads import base
    saved = losses._blocks_pay, postprocess._per_class_pays, postprocess._plane_pairs, base._batch_targets_pay
    losses._blocks_pay = postprocess._per_class_pays = lambda t: False
    postprocess._plane_pairs = lambda t: 1 << 22
    base._batch_targets_pay = lambda t: True
    try:
        yield
    finally:
        losses._blocks_pay, postprocess._per_class_pays, postprocess._plane_pairs, base._batch_targets_pay = saved


def loss_path_ops(model, batch: dict, outputs=None) -> OpCounter:
    """The operations of ``model``'s loss path on ``batch`` given the network's outputs: targets,
    losses and the backward down to the outputs (the network's own backward not counted).
    ``outputs``: ``model(batch["images"])`` already computed (the counts do not depend on the values)."""
    if outputs is None:
        with torch.no_grad():
            outputs = model(batch["images"])
    cls, reg, sizes = outputs
    cls, reg = cls.detach().requires_grad_(), reg.detach().requires_grad_()
    with OpCounter() as counter:
        losses, _ = model.loss_from_outputs(batch, (cls, reg, sizes))
        sum(losses.values()).backward()
    return counter
