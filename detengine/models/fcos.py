"""FCOS's head network (mmdetection 3.3.0 ``FCOSHead`` on ``AnchorFreeHead``), parameter names
as mmdetection's under ``head.`` instead of ``bbox_head.``: ``cls_convs.N.conv`` / ``.gn``,
``reg_convs.N.conv`` / ``.gn``, ``conv_cls``, ``conv_reg``, ``conv_centerness``, ``scales.N.scale``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..builder import ConfigBuildError
from .layers import bias_init_with_prob, flatten_levels, normal_init

__all__ = ["FCOSHeadModule", "Scale", "TowerConv"]


class Scale(nn.Module):
    """A learnable scalar factor (mmcv's ``Scale``): FCOS's per-level ``exp(s * x)`` (sec. 3.1)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class TowerConv(nn.Module):
    """3x3 conv -> GroupNorm (``gn``, when ``num_groups``) -> ReLU: mmcv's ``ConvModule`` with
    ``norm_cfg=dict(type='GN')``; ``bias``: the conv's bias (mmdetection's ``conv_bias``)."""

    def __init__(self, in_channels: int, out_channels: int, *, num_groups: int | None, bias: bool,
                 norm_requires_grad: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        if num_groups is not None:
            if out_channels % num_groups:
                raise ConfigBuildError(f"GroupNorm of {num_groups} groups over {out_channels} channels: "
                                       f"feat_channels must be a multiple of num_groups")
            self.gn = nn.GroupNorm(num_groups, out_channels)
            for p in self.gn.parameters():
                p.requires_grad = norm_requires_grad
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if hasattr(self, "gn"):
            x = self.gn(x)
        return self.act(x)


class FCOSHeadModule(nn.Module):
    """Class and box towers shared across levels; per level ``(B, A, C + 1)`` class logits with the
    centerness logit last (on the box tower with ``centerness_on_reg``), and ``(B, A, 4)``
    distances in pixels: ``exp(scale * reg)``, or ``relu(scale * reg) * stride`` with
    ``norm_on_bbox`` (mmdetection's test-time output; the loss divides by the stride again)."""

    def __init__(self, *, in_channels: int, feat_channels: int, stacked_convs: int, strides, num_classes: int,
                 num_groups: int | None = 32, conv_bias: bool | None = None, norm_requires_grad: bool = True,
                 norm_on_bbox: bool = False, centerness_on_reg: bool = False):
        super().__init__()
        bias = num_groups is None if conv_bias is None else bool(conv_bias)

        def tower():
            return nn.ModuleList(TowerConv(in_channels if i == 0 else feat_channels, feat_channels,
                                           num_groups=num_groups, bias=bias, norm_requires_grad=norm_requires_grad)
                                 for i in range(stacked_convs))
        self.cls_convs, self.reg_convs = tower(), tower()
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in strides)
        self.strides = [s[0] if isinstance(s, (tuple, list)) else s for s in strides]
        self.num_classes, self.norm_on_bbox, self.centerness_on_reg = num_classes, norm_on_bbox, centerness_on_reg
        for m in self.modules():                          # init_cfg: Normal(std=0.01) on every Conv2d
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        nn.init.constant_(self.conv_cls.bias, bias_init_with_prob(0.01))

    @classmethod
    def from_config(cls, head: dict, *, in_channels: int, strides, num_classes: int) -> "FCOSHeadModule":
        """The module of a ``bbox_head`` dict (mmdetection's defaults where it is silent)."""
        norm = head.get("norm_cfg", {"type": "GN", "num_groups": 32, "requires_grad": True})
        conv_bias = head.get("conv_bias", "auto")
        return cls(in_channels=in_channels, feat_channels=head.get("feat_channels", 256),
                   stacked_convs=head.get("stacked_convs", 4), strides=strides, num_classes=num_classes,
                   num_groups=None if norm is None else norm.get("num_groups", 32),
                   conv_bias=None if conv_bias == "auto" else conv_bias,
                   norm_requires_grad=True if norm is None else norm.get("requires_grad", True),
                   norm_on_bbox=head.get("norm_on_bbox", False), centerness_on_reg=head.get("centerness_on_reg", False))

    def forward_single(self, x: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
        """One level: class logits (B, C, H, W), pixel distances (B, 4, H, W), centerness (B, 1, H, W)."""
        cls_feat, reg_feat = x, x
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        bbox_pred = self.scales[level](self.conv_reg(reg_feat)).float()
        if self.norm_on_bbox:
            bbox_pred = bbox_pred.clamp(min=0) * self.strides[level]
        else:
            bbox_pred = bbox_pred.exp()
        return self.conv_cls(cls_feat), bbox_pred, centerness

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        outs = [self.forward_single(f, i) for i, f in enumerate(feats)]
        cls = flatten_levels([torch.cat([c, ctr], dim=1) for c, _, ctr in outs], self.num_classes + 1)  # (B, A, C+1)
        return cls, flatten_levels([r for _, r, _ in outs], 4)                                          # (B, A, 4)
