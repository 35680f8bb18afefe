"""SSD300 / SSD512 (Liu et al. 2016) as mmdetection builds it: ``SSDVGG`` + ``SSDNeck`` + ``SSDHead``."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvModule, DepthwiseSeparableConvModule, flatten_levels, xavier_init

__all__ = ["SSDVGG", "L2Norm", "SSDNeck", "SSDHeadModule"]

VGG16_STAGES = (2, 2, 3, 3, 3)


class SSDVGG(nn.Module):
    """VGG16 with ceil-mode pools, no pool5 of the classifier net; pool5 3x3/1, fc6 as a 3x3 conv
    with dilation 6 and fc7 as a 1x1 conv (SSD paper sec. 3, "base network"). Outputs conv4_3
    (after ReLU, index 22) and fc7 (index 34), mmdetection's ``out_feature_indices``."""

    def __init__(self, *, depth: int = 16, with_last_pool: bool = False, ceil_mode: bool = True,
                 out_feature_indices=(22, 34), channels_last: bool | None = None, **unused):
        super().__init__()
        # NHWC convolutions (a memory layout only): True, False, or None for whichever is faster where
        # the input is (nhwc_pays)
        self.channels_last = None if channels_last is None else bool(channels_last)
        if depth != 16:
            raise ValueError(f"SSDVGG supports depth 16, got {depth}")
        layers, in_ch = [], 3
        for stage, (blocks, out_ch) in enumerate(zip(VGG16_STAGES, (64, 128, 256, 512, 512))):
            for _ in range(blocks):
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = out_ch
            if stage < 4 or with_last_pool:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                   nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        for m in self.features:
            if isinstance(m, nn.Conv2d):  # mmcv VGG.init_weights: kaiming, fan_out, normal
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.out_feature_indices = tuple(out_feature_indices)
        self.out_channels = (512, 1024)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.channels_last or (self.channels_last is None and nhwc_pays(x)):
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.out_feature_indices:
                outs.append(x)
        return tuple(outs)


def nhwc_pays(x: Tensor) -> bool:
    """Whether VGG16's convolutions run faster NHWC than NCHW on ``x``'s device: off the CPU (cuDNN's
    NHWC kernels) and on a CPU whose oneDNN kernels use AVX-512 (an SSD300 training step 1.25x
    faster there); not on a CPU with AVX2 at most, where oneDNN's NHWC backward is ~2x slower (the
    step 15.8 against 11.2 s on an AMD EPYC without AVX-512: bench/RESULTS.md)."""
    return not x.is_cpu or torch.backends.cpu.get_cpu_capability().startswith("AVX512")


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned scale (ParseNet), applied to conv4_3."""

    def __init__(self, n_dims: int, scale: float = 20.0, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n_dims,), float(scale)))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x_float = x.float()
        norm = x_float.pow(2).sum(1, keepdim=True).sqrt() + self.eps
        return (self.weight[None, :, None, None].float().expand_as(x_float) * x_float / norm).type_as(x)


class SSDNeck(nn.Module):
    """Extra feature layers: per level a 1x1 conv to half the channels, then a 3x3 (last:
    ``last_kernel_size``) conv with the level's stride and padding; L2Norm on the first input."""

    def __init__(self, *, in_channels, out_channels, level_strides, level_paddings, l2_norm_scale=20.0,
                 last_kernel_size=3, use_depthwise: bool = False, norm: bool = False, act: str = "ReLU",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, **unused):
        super().__init__()
        in_channels, out_channels = list(in_channels), list(out_channels)
        if out_channels[:len(in_channels)] != in_channels or len(out_channels) - len(in_channels) != len(level_strides):
            raise ValueError(f"SSDNeck channels {in_channels} -> {out_channels} do not fit {len(level_strides)} levels")
        self.l2_norm = L2Norm(in_channels[0], l2_norm_scale) if l2_norm_scale else None
        extra = out_channels[len(in_channels):]
        self.extra_layers = nn.ModuleList()
        for i, (ch, stride, pad) in enumerate(zip(extra, level_strides, level_paddings)):
            k = last_kernel_size if i == len(extra) - 1 else 3
            prev = out_channels[len(in_channels) - 1 + i]
            conv = dict(norm=norm, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)
            second = DepthwiseSeparableConvModule if use_depthwise else ConvModule  # SSDLite: depthwise
            self.extra_layers.append(nn.Sequential(ConvModule(prev, ch // 2, 1, **conv),
                                                   second(ch // 2, ch, k, stride, pad, **conv)))
        for m in self.extra_layers.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m)

    def forward(self, inputs) -> tuple[Tensor, ...]:
        outs = list(inputs)
        if self.l2_norm is not None:
            outs[0] = self.l2_norm(outs[0])
        feat = outs[-1]
        for layer in self.extra_layers:
            feat = layer(feat)
            outs.append(feat)
        return tuple(outs)


class SSDHeadModule(nn.Module):
    """One 3x3 classification and one 3x3 regression conv per level (SSD paper fig. 2; d2l's
    ``cls_predictor`` / ``bbox_predictor``). ``xavier``: mmdetection's init; False: PyTorch's
    default, as d2l's TinySSD."""

    def __init__(self, *, in_channels, num_base_priors, cls_channels: int, xavier: bool = True,
                 use_depthwise: bool = False, norm: bool = True, act: str | None = "ReLU", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1):
        super().__init__()
        self.cls_channels = cls_channels
        if use_depthwise:   # SSDLite: a 3x3 depthwise ConvModule (BN, activation), then a 1x1 predictor
            conv = dict(norm=norm, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)

            def branch(c, out):
                return nn.Sequential(ConvModule(c, c, 3, 1, 1, groups=c, **conv), nn.Conv2d(c, out, 1))
            self.cls_convs = nn.ModuleList(branch(c, a * cls_channels) for c, a in zip(in_channels, num_base_priors))
            self.reg_convs = nn.ModuleList(branch(c, a * 4) for c, a in zip(in_channels, num_base_priors))
        else:
            self.cls_convs = nn.ModuleList(nn.Conv2d(c, a * cls_channels, 3, padding=1)
                                           for c, a in zip(in_channels, num_base_priors))
            self.reg_convs = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1)
                                           for c, a in zip(in_channels, num_base_priors))
        for m in self.modules():
            if xavier and isinstance(m, nn.Conv2d):
                xavier_init(m)

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        """(B, A, K) scores and (B, A, 4) regression, levels concatenated in prior order."""
        cls = [conv(f) for conv, f in zip(self.cls_convs, feats)]
        reg = [conv(f) for conv, f in zip(self.reg_convs, feats)]
        return flatten_levels(cls, self.cls_channels), flatten_levels(reg, 4)
