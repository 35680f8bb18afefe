"""MobileNetV2 (Sandler et al. 2018) as mmdetection's ``MobileNetV2`` backbone builds it (SSDLite):
the same module names (``conv1``, ``layer1``..``layer7`` of ``InvertedResidual`` blocks, ``conv2``),
so mmdetection's checkpoints load by name, and ``out_indices`` counting ``layer1``..``conv2`` as
0..7 ((4, 7): stride 16 with 96 channels, stride 32 with 1280)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvModule, StagedBackbone

__all__ = ["MobileNetV2", "make_divisible", "apply_init_cfg"]

# expand ratio, channels, blocks, stride of the first block
ARCH = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def make_divisible(value: float, divisor: int, min_value: int | None = None, min_ratio: float = 0.9) -> int:
    """mmdetection's ``make_divisible``: the nearest multiple of ``divisor``, never below
    ``min_ratio`` of ``value``."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < min_ratio * value else new


class InvertedResidual(nn.Module):
    """1x1 expand (when ``expand_ratio != 1``), 3x3 depthwise, 1x1 linear; identity shortcut at
    stride 1 with equal channels."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, stride: int, with_expand_conv: bool,
                 **conv):
        super().__init__()
        self.with_res_shortcut = stride == 1 and in_channels == out_channels
        if with_expand_conv:
            self.expand_conv = ConvModule(in_channels, mid_channels, 1, **conv)
        self.depthwise_conv = ConvModule(mid_channels, mid_channels, 3, stride, 1, groups=mid_channels, **conv)
        self.linear_conv = ConvModule(mid_channels, out_channels, 1, **{**conv, "act": None})

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand_conv(x) if hasattr(self, "expand_conv") else x
        out = self.linear_conv(self.depthwise_conv(out))
        return x + out if self.with_res_shortcut else out


class MobileNetV2(StagedBackbone):
    def __init__(self, *, widen_factor: float = 1.0, out_indices=(1, 2, 4, 7), frozen_stages: int = -1,
                 norm_eval: bool = False, act: str = "ReLU6", bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        super().__init__()
        conv = dict(act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)
        channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvModule(3, channels, 3, 2, 1, **conv)
        self.layers = []
        for i, (expand, out, blocks, stride) in enumerate(ARCH):
            out = make_divisible(out * widen_factor, 8)
            layer = []
            for b in range(blocks):
                layer.append(InvertedResidual(channels, out, int(round(channels * expand)), stride if b == 0 else 1,
                                              expand != 1, **conv))
                channels = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.layers.append(f"layer{i + 1}")
        last = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = ConvModule(channels, last, 1, **conv)
        self.layers.append("conv2")
        widths = [make_divisible(c * widen_factor, 8) for _, c, _, _ in ARCH] + [last]
        self.out_indices = tuple(out_indices)
        self.out_channels = tuple(widths[i] for i in self.out_indices)
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        for m in self.modules():                     # mmdetection's default: Kaiming convs, BN at 1
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._freeze()

    def frozen_modules(self) -> list[nn.Module]:
        return ([self.conv1] if self.frozen_stages >= 0 else []) + \
            [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def _init_one(m: nn.Module, cfg: dict) -> None:
    kind, bias = cfg["type"], cfg.get("bias", 0)
    if kind == "Normal":
        nn.init.normal_(m.weight, cfg.get("mean", 0.0), cfg.get("std", 1.0))
    elif kind == "TruncNormal":
        nn.init.trunc_normal_(m.weight, cfg.get("mean", 0.0), cfg.get("std", 1.0), cfg.get("a", -2.0), cfg.get("b", 2.0))
    elif kind == "Xavier":
        (nn.init.xavier_uniform_ if cfg.get("distribution", "normal") == "uniform" else nn.init.xavier_normal_)(
            m.weight, gain=cfg.get("gain", 1.0))
    elif kind == "Kaiming":
        init = nn.init.kaiming_uniform_ if cfg.get("distribution", "normal") == "uniform" else nn.init.kaiming_normal_
        init(m.weight, a=cfg.get("a", 0), mode=cfg.get("mode", "fan_out"),
             nonlinearity=cfg.get("nonlinearity", "relu"))
    elif kind == "Constant":
        nn.init.constant_(m.weight, cfg["val"])
    if getattr(m, "bias", None) is not None:
        nn.init.constant_(m.bias, bias)


INIT_TYPES = ("Normal", "TruncNormal", "Xavier", "Kaiming", "Constant")
_LAYER_CLASSES = {"Conv2d": nn.Conv2d, "BatchNorm2d": nn.BatchNorm2d, "_BatchNorm": nn.BatchNorm2d}


@torch.no_grad()
def apply_init_cfg(part: nn.Module, init_cfg) -> None:
    """mmengine's initialisers of ``init_cfg`` (a dict or a list; ``Pretrained`` is loaded
    elsewhere) on every module of ``part`` of the named ``layer`` classes. Then, as mmengine's
    ``init_weights`` calls the direct children's own ``init_weights``, a direct ``ConvModule``
    child is re-initialised as mmcv's (Kaiming, fan_out, BN at 1)."""
    for cfg in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
        if cfg.get("type") == "Pretrained":
            continue
        layers = cfg.get("layer") or []
        for name in [layers] if isinstance(layers, str) else layers:
            for m in part.modules():
                if isinstance(m, _LAYER_CLASSES[name]):
                    _init_one(m, cfg)
    for child in part.children():
        if isinstance(child, ConvModule):
            nn.init.kaiming_normal_(child.conv.weight, mode="fan_out", nonlinearity="relu")
            if child.conv.bias is not None:
                nn.init.constant_(child.conv.bias, 0)
            if isinstance(child.bn, nn.BatchNorm2d):
                nn.init.constant_(child.bn.weight, 1)
                nn.init.constant_(child.bn.bias, 0)
