"""Feature-map sizes a backbone produces for an input size, without running it.

The trace needs the priors of an input before (or without) any network; these rules are the
conv arithmetic of each backbone. The trainable detectors check them against a real forward pass.
"""
from __future__ import annotations

import math

__all__ = ["StrideRule", "SSDVGGRule", "SSDMobileNetV2Rule", "TinySSDRule", "conv_out"]


def conv_out(n: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False) -> int:
    """Output length of a conv / pool along one axis."""
    v = (n + 2 * padding - kernel) / stride
    return int(math.ceil(v) if ceil_mode else math.floor(v)) + 1


class StrideRule:
    """ResNet / CSP + FPN: level of stride s has ``ceil(n / s)`` cells (stride-2 3x3 convs, pad 1)."""

    def __init__(self, strides):
        self.strides = [s if isinstance(s, (tuple, list)) else (s, s) for s in strides]

    def __call__(self, input_shape):
        h, w = input_shape
        return [(int(math.ceil(h / sh)), int(math.ceil(w / sw))) for sw, sh in self.strides]


class SSDVGGRule:
    """mmdetection's SSDVGG (ceil-mode pools) + SSDNeck extra layers.

    conv4_3 after three ceil-mode 2x2 pools, fc7 after one more (pool5 keeps size), then one extra
    level per ``level_strides`` / ``level_paddings`` with 3x3 convs (the last with
    ``last_kernel_size``). SSD300: 38, 19, 10, 5, 3, 1. SSD512: 64, 32, 16, 8, 4, 2, 1.
    """

    def __init__(self, level_strides=(2, 2, 1, 1), level_paddings=(1, 1, 0, 0), last_kernel_size=3):
        self.level_strides = list(level_strides)
        self.level_paddings = list(level_paddings)
        self.last_kernel_size = last_kernel_size

    def _base(self, n: int) -> list[int]:
        for _ in range(3):
            n = conv_out(n, 2, 2, 0, ceil_mode=True)
        return [n, conv_out(n, 2, 2, 0, ceil_mode=True)]

    def _axis(self, n: int) -> list[int]:
        sizes = self._base(n)
        last = len(self.level_strides) - 1
        for i, (s, p) in enumerate(zip(self.level_strides, self.level_paddings)):
            k = self.last_kernel_size if i == last else 3
            sizes.append(conv_out(sizes[-1], k, s, p))
        return sizes

    def __call__(self, input_shape):
        hs, ws = self._axis(input_shape[0]), self._axis(input_shape[1])
        return list(zip(hs, ws))


class SSDMobileNetV2Rule(SSDVGGRule):
    """SSDLite: mmdetection's MobileNetV2 with ``out_indices=(4, 7)`` (stride 16 after four
    stride-2 3x3 convs with padding 1, stride 32 after a fifth), then the SSDNeck levels."""

    def _base(self, n: int) -> list[int]:
        for _ in range(4):
            n = conv_out(n, 3, 2, 1)
        return [n, conv_out(n, 3, 2, 1)]


class TinySSDRule:
    """d2l TinySSD: three halving blocks to the base map, two more, then global max pool to 1x1."""

    def __init__(self, num_down_blocks: int = 3, num_extra_blocks: int = 3):
        self.num_down_blocks = num_down_blocks
        self.num_extra_blocks = num_extra_blocks

    def __call__(self, input_shape):
        h, w = input_shape
        sizes = []
        for _ in range(self.num_down_blocks):
            h, w = h // 2, w // 2
        sizes.append((h, w))
        for _ in range(self.num_extra_blocks):
            h, w = h // 2, w // 2
            sizes.append((h, w))
        sizes.append((1, 1))
        return sizes
