"""Small building blocks shared by the backbones, necks and heads."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["StagedBackbone", "ConvModule", "DepthwiseSeparableConvModule", "bias_init_with_prob", "normal_init", "xavier_init",
           "make_act"]


def bias_init_with_prob(prior_prob: float) -> float:
    """Bias that makes a sigmoid output ``prior_prob`` (RetinaNet paper sec. 4.1, "initialization")."""
    return float(-math.log((1 - prior_prob) / prior_prob))


def normal_init(module: nn.Module, std: float = 0.01, bias: float = 0.0) -> None:
    nn.init.normal_(module.weight, 0.0, std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def xavier_init(module: nn.Module, bias: float = 0.0) -> None:
    nn.init.xavier_uniform_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def make_act(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    table = {"ReLU": nn.ReLU, "ReLU6": nn.ReLU6, "SiLU": nn.SiLU, "Swish": nn.SiLU, "LeakyReLU": nn.LeakyReLU}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(table)}")
    return table[name](inplace=True)


class StagedBackbone(nn.Module):
    """A backbone whose first stages may be frozen (``frozen_stages``: the stem and that many
    stages stay in eval mode with no gradients) and whose BatchNorm statistics may stay fixed in
    training (``norm_eval``), as mmdetection's backbones apply them. Subclasses say which modules
    :meth:`frozen_modules` are and call :meth:`_freeze` at the end of ``__init__``."""

    frozen_stages: int = -1
    norm_eval: bool = False

    def frozen_modules(self) -> list[nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _freeze(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


class ConvModule(nn.Module):
    """conv -> (BN) -> (activation), mmcv's ``ConvModule``; the conv has a bias only without BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, *, norm: bool = True, act: str | None = "ReLU",
                 bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels, momentum=bn_momentum, eps=bn_eps) if norm else nn.Identity()
        self.act = make_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise k x k ConvModule followed by a pointwise 1 x 1 ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 **kw):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, **kw)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, **kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


def flatten_levels(per_level: list[Tensor], channels: int) -> Tensor:
    """[(B, A_l * K, H, W)] -> (B, sum_l H W A_l, K): level, row, column, prior (the prior order)."""
    b = per_level[0].shape[0]
    return torch.cat([t.permute(0, 2, 3, 1).reshape(b, -1, channels) for t in per_level], dim=1)
