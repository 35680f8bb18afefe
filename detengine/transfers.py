"""Host numbers on the device without a host sync. On a GPU a tensor made from Python numbers on the
device (``new_tensor``, ``torch.tensor(..., device=cuda)``, a list index) is a blocking copy, which waits
for every queued kernel (``cudaStreamSynchronize``): in a loss path of a few hundred small launches each
is a stall. ``launches.OpCounter.host_copies`` counts the ones left."""
from __future__ import annotations

import torch
from torch import Tensor

_CONSTANTS: dict = {}
host_copies = 0            # host_values' copies so far (launches.OpCounter leaves them out of its own count)


def constant(values, like: Tensor) -> Tensor:
    """``like.new_tensor(values)`` made once per device and dtype, not per call: on a GPU
    ``new_tensor`` is a blocking host-to-device copy, which waits for every queued kernel
    (``cudaStreamSynchronize``). Read-only: callers must not write into it. Kept as a normal tensor
    whatever mode the first call ran in (one made under ``torch.inference_mode`` could not be saved
    for a later backward); a traced call (a fake or functional tensor, ``torch.export``) gets its own."""
    if type(like) is not torch.Tensor and not isinstance(like, torch.nn.Parameter):
        return like.new_tensor(values)          # a tensor subclass (FakeTensor, ...): nothing to keep
    key = (tuple(values) if isinstance(values, (list, tuple)) else values, like.dtype, like.device)
    t = _CONSTANTS.get(key)
    if t is None:
        with torch.inference_mode(False):
            t = _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return t


def host_values(values, device, dtype=torch.long) -> Tensor:
    """A tensor of host numbers (counts, image sizes) on ``device`` without waiting for the GPU: from
    pinned memory, ``non_blocking`` (a plain ``torch.tensor(..., device=cuda)`` synchronises the
    stream). The caching host allocator keeps the pinned block until the copy is done."""
    global host_copies
    host_copies += 1
    t = torch.tensor(values, dtype=dtype)
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
