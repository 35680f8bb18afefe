"""YOLOX's backbone and neck (Ge et al. 2021, "YOLOX: Exceeding YOLO Series in 2021"), as
mmdetection 3.3.0 builds them: ``CSPDarknet`` (Focus stem, CSP stages with Darknet bottlenecks,
SPP in the last stage) and ``YOLOXPAFPN``.

Parameter names are mmdetection's except the backbone's stages: ``stem.conv.conv`` /
``stem.conv.bn``, ``stages.N`` for mmdetection's ``stageN+1`` (the checkpoint loader's rule for
every CSP backbone, :mod:`detengine.train.checkpoint`), inside them the ``ConvModule`` /
``DepthwiseSeparableConvModule`` names (``conv``, ``bn``; ``depthwise_conv``, ``pointwise_conv``)
and ``CSPLayer``'s ``main_conv``, ``short_conv``, ``final_conv``, ``blocks.K.conv1`` / ``.conv2``;
the neck's ``reduce_layers``, ``top_down_blocks``, ``downsamples``, ``bottom_up_blocks``,
``out_convs``.

Initialisation: mmdetection's ``init_cfg`` of these parts, ``Kaiming`` (uniform, ``a=sqrt(5)``,
``fan_in``, ``leaky_relu``) on every ``Conv2d`` with the bias set to 0 (:func:`kaiming_init_convs`);
BatchNorm weight 1, bias 0.
"""
from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from .layers import ConvModule, DepthwiseSeparableConvModule, StagedBackbone

__all__ = ["CSPDarknet", "YOLOXPAFPN", "CSPLayer", "DarknetBottleneck", "Focus", "SPPBottleneck",
           "kaiming_init_convs", "ARCH_SETTINGS"]

#: (in, out, blocks, add_identity, use_spp) per stage, before the widen / deepen factors
ARCH_SETTINGS = {
    "P5": [(64, 128, 3, True, False), (128, 256, 9, True, False), (256, 512, 9, True, False),
           (512, 1024, 3, False, True)],
    "P6": [(64, 128, 3, True, False), (128, 256, 9, True, False), (256, 512, 9, True, False),
           (512, 768, 3, True, False), (768, 1024, 3, False, True)],
}


def kaiming_init_convs(module: nn.Module) -> None:
    """mmengine's ``Kaiming`` initialiser as YOLOX's parts configure it: every ``Conv2d`` weight
    ``kaiming_uniform_(a=sqrt(5), mode='fan_in', nonlinearity='leaky_relu')``, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)


def _conv(i: int, o: int, k: int, s: int = 1, *, act: str, depthwise: bool = False) -> nn.Module:
    """A 'same'-padded ConvModule (BN, activation), or its depthwise-separable form."""
    if depthwise:
        return DepthwiseSeparableConvModule(i, o, k, s, (k - 1) // 2, act=act)
    return ConvModule(i, o, k, s, (k - 1) // 2, act=act)


class Focus(nn.Module):
    """Space-to-depth stem: the four pixel phases (top-left, bottom-left, top-right, bottom-right)
    stacked on the channels, then a ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, act: str = "Swish"):
        super().__init__()
        self.conv = _conv(in_channels * 4, out_channels, kernel_size, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling (YOLOv3-SPP): 1x1 conv to half the channels, the input and its max
    pools of ``kernel_sizes`` (stride 1) concatenated, 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes=(5, 9, 13), *, act: str = "Swish"):
        super().__init__()
        mid = in_channels // 2
        self.conv1 = _conv(in_channels, mid, 1, act=act)
        self.poolings = nn.ModuleList(nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = _conv(mid * (len(kernel_sizes) + 1), out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))


class DarknetBottleneck(nn.Module):
    """1x1 ConvModule, 3x3 ConvModule (depthwise-separable with ``use_depthwise``), plus the input
    when ``add_identity`` and the channels agree."""

    def __init__(self, in_channels: int, out_channels: int, expansion: float = 0.5, add_identity: bool = True,
                 use_depthwise: bool = False, *, act: str = "Swish"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = _conv(in_channels, hidden, 1, act=act)
        self.conv2 = _conv(hidden, out_channels, 3, act=act, depthwise=use_depthwise)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross-stage partial layer with Darknet bottlenecks (mmdetection's ``CSPLayer`` with
    ``use_cspnext_block=False``, no channel attention): two 1x1 branches, the blocks on one,
    concatenated (blocks first), 1x1."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float = 0.5, num_blocks: int = 1,
                 add_identity: bool = True, use_depthwise: bool = False, *, act: str = "Swish"):
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = _conv(in_channels, mid, 1, act=act)
        self.short_conv = _conv(in_channels, mid, 1, act=act)
        self.final_conv = _conv(2 * mid, out_channels, 1, act=act)
        self.blocks = nn.Sequential(*[DarknetBottleneck(mid, mid, 1.0, add_identity, use_depthwise, act=act)
                                      for _ in range(num_blocks)])

    def forward(self, x: Tensor) -> Tensor:
        short = self.short_conv(x)
        main = self.blocks(self.main_conv(x))
        return self.final_conv(torch.cat((main, short), dim=1))


class CSPDarknet(StagedBackbone):
    """CSP-Darknet (YOLOv5 / YOLOX). ``out_indices`` count the stem as 0 and the stages from 1
    (default (2, 3, 4): strides 8, 16, 32). ``frozen_stages``: the stem and that many stages stay
    frozen (mmdetection's ``_freeze_stages``); ``norm_eval``: BatchNorm statistics fixed in training.
    Every stage: 3x3 stride-2 conv, SPP (last stage), CSP layer of
    ``max(round(blocks x deepen_factor), 1)`` bottlenecks; channels ``int(c x widen_factor)``."""

    def __init__(self, *, arch: str = "P5", deepen_factor: float = 1.0, widen_factor: float = 1.0,
                 out_indices=(2, 3, 4), frozen_stages: int = -1, use_depthwise: bool = False,
                 spp_kernal_sizes=(5, 9, 13), act: str = "Swish", norm_eval: bool = False):
        super().__init__()
        setting = ARCH_SETTINGS[arch]
        if not set(out_indices) <= set(range(len(setting) + 1)):
            raise ValueError(f"CSPDarknet out_indices {tuple(out_indices)} must be in 0..{len(setting)}")
        if frozen_stages not in range(-1, len(setting) + 1):
            raise ValueError(f"CSPDarknet frozen_stages must be in -1..{len(setting)}, got {frozen_stages}")
        self.out_indices = tuple(out_indices)
        self.frozen_stages, self.norm_eval = int(frozen_stages), bool(norm_eval)
        stem = int(setting[0][0] * widen_factor)
        self.stem = Focus(3, stem, kernel_size=3, act=act)
        self.stages = nn.ModuleList()
        channels = [stem]
        for cin, cout, blocks, identity, spp in setting:
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            n = max(round(blocks * deepen_factor), 1)
            layers = [_conv(cin, cout, 3, 2, act=act, depthwise=use_depthwise)]
            if spp:
                layers.append(SPPBottleneck(cout, cout, spp_kernal_sizes, act=act))
            layers.append(CSPLayer(cout, cout, num_blocks=n, add_identity=identity, use_depthwise=use_depthwise,
                                   act=act))
            self.stages.append(nn.Sequential(*layers))
            channels.append(cout)
        self.out_channels = tuple(channels[i] for i in self.out_indices)
        kaiming_init_convs(self)
        self._freeze()

    @staticmethod
    def translate_pretrained(state: dict) -> dict:
        """mmdetection's CSPDarknet names (stage1..4) in ours (stages.0..3), for a ``Pretrained``
        backbone checkpoint with ``prefix='backbone.'``."""
        return {re.sub(r"^stage(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.", k, count=1): v for k, v in state.items()}

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem, *self.stages[:self.frozen_stages]]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        x = self.stem(x)
        if 0 in self.out_indices:
            outs.append(x)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class YOLOXPAFPN(nn.Module):
    """YOLOX's path-aggregation FPN: top-down (1x1 reduce, nearest x2 upsample, CSP layer), then
    bottom-up (3x3 stride-2 conv, CSP layer), then a 1x1 ConvModule to ``out_channels`` per level."""

    def __init__(self, *, in_channels, out_channels: int, num_csp_blocks: int = 3, use_depthwise: bool = False,
                 act: str = "Swish"):
        super().__init__()
        ch = list(in_channels)
        self.in_channels, self.out_channels = ch, int(out_channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce_layers, self.top_down_blocks = nn.ModuleList(), nn.ModuleList()
        for idx in range(len(ch) - 1, 0, -1):
            self.reduce_layers.append(_conv(ch[idx], ch[idx - 1], 1, act=act))
            self.top_down_blocks.append(CSPLayer(ch[idx - 1] * 2, ch[idx - 1], num_blocks=num_csp_blocks,
                                                 add_identity=False, use_depthwise=use_depthwise, act=act))
        self.downsamples, self.bottom_up_blocks = nn.ModuleList(), nn.ModuleList()
        for idx in range(len(ch) - 1):
            self.downsamples.append(_conv(ch[idx], ch[idx], 3, 2, act=act, depthwise=use_depthwise))
            self.bottom_up_blocks.append(CSPLayer(ch[idx] * 2, ch[idx + 1], num_blocks=num_csp_blocks,
                                                  add_identity=False, use_depthwise=use_depthwise, act=act))
        self.out_convs = nn.ModuleList(_conv(c, out_channels, 1, act=act) for c in ch)
        kaiming_init_convs(self)

    def forward(self, inputs) -> tuple[Tensor, ...]:
        n = len(self.in_channels)
        if len(inputs) != n:
            raise ValueError(f"YOLOXPAFPN takes {n} feature maps, got {len(inputs)}")
        inner = [inputs[-1]]
        for idx in range(n - 1, 0, -1):
            high = self.reduce_layers[n - 1 - idx](inner[0])
            inner[0] = high
            inner.insert(0, self.top_down_blocks[n - 1 - idx](torch.cat([self.upsample(high), inputs[idx - 1]], 1)))
        outs = [inner[0]]
        for idx in range(n - 1):
            outs.append(self.bottom_up_blocks[idx](torch.cat([self.downsamples[idx](outs[-1]), inner[idx + 1]], 1)))
        return tuple(conv(o) for conv, o in zip(self.out_convs, outs))
