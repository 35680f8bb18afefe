"""d2l's TinySSD (sec. 14.7), layer for layer: a 3-block base net (16, 32, 64 channels), three
down-sampling blocks (128) and a global max pool. Its per-level 3x3 class and box predictors are
:class:`~detengine.models.ssd.SSDHeadModule` with PyTorch's default init."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["TinySSDBaseNet", "down_sample_blk"]


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU, then a 2x2 max pool (halves height and width)."""
    blk = []
    for _ in range(2):
        blk += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]
        in_channels = out_channels
    blk.append(nn.MaxPool2d(2))
    return nn.Sequential(*blk)


class TinySSDBaseNet(nn.Module):
    """The five feature blocks; returns the five feature maps (32, 16, 8, 4, 1 for 256 x 256).

    ``channels_last``: run the convolutions on an NHWC copy of the input (a memory layout only,
    same values up to float rounding; 1.3x faster at 128 px and 1.6x at 256 px on a 2-core CPU)."""

    def __init__(self, *, num_filters=(3, 16, 32, 64), channels_last: bool = True, **unused):
        super().__init__()
        self.channels_last = bool(channels_last)
        f = list(num_filters)
        base = nn.Sequential(*[down_sample_blk(f[i], f[i + 1]) for i in range(len(f) - 1)])
        self.blocks = nn.ModuleList([base, down_sample_blk(f[-1], 128), down_sample_blk(128, 128),
                                     down_sample_blk(128, 128), nn.AdaptiveMaxPool2d((1, 1))])
        self.out_channels = (f[-1], 128, 128, 128, 128)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for blk in self.blocks:
            x = blk(x)
            outs.append(x)
        return tuple(outs)

