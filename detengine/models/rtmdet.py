"""RTMDet-tiny (Lyu et al. 2022) as mmdetection builds it: ``CSPNeXt`` P5 backbone,
``CSPNeXtPAFPN`` neck and ``RTMDetSepBNHead`` (convs shared across levels, BN separate)."""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from .layers import ConvModule, DepthwiseSeparableConvModule, bias_init_with_prob, flatten_levels, normal_init

__all__ = ["CSPNeXt", "CSPNeXtPAFPN", "RTMDetSepBNHeadModule"]

# (in, out, blocks, add_identity, use_spp) of the P5 architecture, before widen / deepen factors
P5_ARCH = [(64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False),
           (512, 1024, 3, False, True)]
P6_ARCH = [(64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False),
           (512, 768, 3, True, False), (768, 1024, 3, False, True)]
ARCHS = {"P5": P5_ARCH, "P6": P6_ARCH}


def _conv(i, o, k, s=1, act="SiLU"):
    return ConvModule(i, o, k, s, (k - 1) // 2, act=act)


class ChannelAttention(nn.Module):
    """Squeeze-style channel gate: global average pool, 1x1 conv, hard sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class CSPNeXtBlock(nn.Module):
    """3x3 conv, then a 5x5 depthwise-separable conv, with an identity shortcut."""

    def __init__(self, channels: int, add_identity: bool, expansion: float = 1.0):
        super().__init__()
        hidden = int(channels * expansion)
        self.conv1 = _conv(channels, hidden, 3)
        self.conv2 = DepthwiseSeparableConvModule(hidden, channels, 5, 1, 2, act="SiLU")
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross-stage partial layer: two 1x1 branches, blocks on one, concat, [attention], 1x1.
    Attention is off by default, as in mmdetection: CSPNeXt turns it on, the PAFPN does not."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, add_identity: bool = True,
                 expand_ratio: float = 0.5, channel_attention: bool = False):
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = _conv(in_channels, mid, 1)
        self.short_conv = _conv(in_channels, mid, 1)
        self.final_conv = _conv(2 * mid, out_channels, 1)
        self.blocks = nn.Sequential(*[CSPNeXtBlock(mid, add_identity) for _ in range(num_blocks)])
        self.attention = ChannelAttention(2 * mid) if channel_attention else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x_cat = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        return self.final_conv(self.attention(x_cat))


class SPPFBottleneck(nn.Module):
    """Spatial pyramid pooling: three chained 5x5 max pools, concatenated with the input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__()
        mid = in_channels // 2
        self.conv1 = _conv(in_channels, mid, 1)
        self.pool = nn.MaxPool2d(kernel_size, 1, kernel_size // 2)
        self.conv2 = _conv(mid * 4, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        p1 = self.pool(x)
        p2 = self.pool(p1)
        return self.conv2(torch.cat([x, p1, p2, self.pool(p2)], dim=1))


class CSPNeXt(nn.Module):
    """CSPNeXt backbone, ``arch`` P5 (outputs of stages ``out_indices`` (2, 3, 4): strides 8, 16,
    32) or P6 (a 768-channel stage before the last; (2, 3, 4, 5): strides 8 to 64)."""

    def __init__(self, *, deepen_factor: float = 0.167, widen_factor: float = 0.375, expand_ratio: float = 0.5,
                 channel_attention: bool = True, out_indices=(2, 3, 4), arch: str = "P5", **unused):
        super().__init__()
        arch_setting = ARCHS[arch]
        stem = int(arch_setting[0][0] * widen_factor)
        self.stem = nn.Sequential(_conv(3, stem // 2, 3, 2), _conv(stem // 2, stem // 2, 3), _conv(stem // 2, stem, 3))
        self.stages = nn.ModuleList()
        for cin, cout, blocks, identity, spp in arch_setting:
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            n = max(round(blocks * deepen_factor), 1)
            layers = [_conv(cin, cout, 3, 2)] + ([SPPFBottleneck(cout, cout)] if spp else [])
            layers.append(CSPLayer(cout, cout, n, identity, expand_ratio, channel_attention))
            self.stages.append(nn.Sequential(*layers))
        self.out_indices = tuple(out_indices)
        self.out_channels = tuple(int(arch_setting[i - 1][1] * widen_factor) for i in self.out_indices)

    @staticmethod
    def translate_pretrained(state: dict) -> dict:
        """mmdetection's CSPNeXt names (stage1..4) in ours (stages.0..3), e.g. for its ImageNet
        ``cspnext-tiny_imagenet_600e.pth`` with ``prefix='backbone.'``."""
        return {re.sub(r"^stage(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.", k, count=1): v
                for k, v in state.items()}

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class CSPNeXtPAFPN(nn.Module):
    """Path-aggregation FPN with CSP blocks: top-down then bottom-up, 3x3 output convs."""

    def __init__(self, *, in_channels, out_channels: int, num_csp_blocks: int = 1, expand_ratio: float = 0.5,
                 **unused):
        super().__init__()
        ch = list(in_channels)
        self.in_channels = ch
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce_layers = nn.ModuleList(_conv(ch[i], ch[i - 1], 1) for i in range(len(ch) - 1, 0, -1))
        self.top_down_blocks = nn.ModuleList(CSPLayer(ch[i - 1] * 2, ch[i - 1], num_csp_blocks, False, expand_ratio)
                                             for i in range(len(ch) - 1, 0, -1))
        self.downsamples = nn.ModuleList(_conv(ch[i], ch[i], 3, 2) for i in range(len(ch) - 1))
        self.bottom_up_blocks = nn.ModuleList(CSPLayer(ch[i] * 2, ch[i + 1], num_csp_blocks, False, expand_ratio)
                                              for i in range(len(ch) - 1))
        self.out_convs = nn.ModuleList(_conv(c, out_channels, 3) for c in ch)

    def forward(self, inputs) -> tuple[Tensor, ...]:
        n = len(self.in_channels)
        inner = [inputs[-1]]
        for idx in range(n - 1, 0, -1):
            high = self.reduce_layers[n - 1 - idx](inner[0])
            inner[0] = high
            inner.insert(0, self.top_down_blocks[n - 1 - idx](torch.cat([self.upsample(high), inputs[idx - 1]], 1)))
        outs = [inner[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], 1)))
        return tuple(conv(o) for conv, o in zip(self.out_convs, outs))


class RTMDetSepBNHeadModule(nn.Module):
    """Per level: ``stacked_convs`` 3x3 ConvModules for cls and reg whose conv weights are shared
    across levels while BN stays per level, then 1x1 predictors; regression x stride (exp first
    with ``exp_on_reg``), so ``bbox_preds`` are distances in pixels."""

    def __init__(self, *, in_channels: int, feat_channels: int, stacked_convs: int, strides, cls_channels: int,
                 pred_kernel_size: int = 1, share_conv: bool = True, exp_on_reg: bool = False):
        super().__init__()
        self.cls_channels, self.exp_on_reg = cls_channels, exp_on_reg
        self.strides = [s if isinstance(s, (int, float)) else s[0] for s in strides]
        self.cls_convs, self.reg_convs = nn.ModuleList(), nn.ModuleList()
        for _ in self.strides:
            self.cls_convs.append(nn.ModuleList(_conv(in_channels if i == 0 else feat_channels, feat_channels, 3)
                                                for i in range(stacked_convs)))
            self.reg_convs.append(nn.ModuleList(_conv(in_channels if i == 0 else feat_channels, feat_channels, 3)
                                                for i in range(stacked_convs)))
        pad = pred_kernel_size // 2
        self.rtm_cls = nn.ModuleList(nn.Conv2d(feat_channels, cls_channels, pred_kernel_size, padding=pad)
                                     for _ in self.strides)
        self.rtm_reg = nn.ModuleList(nn.Conv2d(feat_channels, 4, pred_kernel_size, padding=pad) for _ in self.strides)
        if share_conv:
            for n in range(1, len(self.strides)):
                for i in range(stacked_convs):
                    self.cls_convs[n][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[n][i].conv = self.reg_convs[0][i].conv
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        for cls in self.rtm_cls:
            nn.init.constant_(cls.bias, bias_init_with_prob(0.01))

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        cls_out, reg_out = [], []
        for idx, (x, stride) in enumerate(zip(feats, self.strides)):
            c, r = x, x
            for layer in self.cls_convs[idx]:
                c = layer(c)
            for layer in self.reg_convs[idx]:
                r = layer(r)
            reg = self.rtm_reg[idx](r)
            cls_out.append(self.rtm_cls[idx](c))
            reg_out.append((reg.exp() if self.exp_on_reg else reg) * stride)
        return flatten_levels(cls_out, self.cls_channels), flatten_levels(reg_out, 4)
