"""GFL's head network (mmdetection 3.3.0 ``GFLHead``), parameter names as mmdetection's under
``head.``: ``cls_convs.N.conv`` / ``.gn``, ``reg_convs.N.conv`` / ``.gn``, ``gfl_cls``,
``gfl_reg``, ``scales.N.scale`` and the ``integral.project`` buffer (``[0, 1, ..., reg_max]``, in
mmdetection's checkpoints too)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .fcos import Scale, TowerConv
from .layers import bias_init_with_prob, flatten_levels, normal_init

__all__ = ["GFLHeadModule", "Integral"]


class Integral(nn.Module):
    """mmdetection's ``Integral``: the expectation of a distribution over ``0, 1, ..., reg_max``
    (its ``project`` buffer is part of the state dict); the head core decodes with the same rule."""

    def __init__(self, reg_max: int = 16):
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer("project", torch.linspace(0, reg_max, reg_max + 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 4) expected distances of (N, 4 * (reg_max + 1)) logits."""
        x = torch.softmax(x.reshape(-1, self.reg_max + 1), dim=1)
        return nn.functional.linear(x, self.project.type_as(x)).reshape(-1, 4)


class GFLHeadModule(nn.Module):
    """Class and box towers shared across levels (GroupNorm ConvModules); per level ``(B, A, C)``
    joint class-quality logits and ``(B, A, 4 * (reg_max + 1))`` distribution logits times the
    level's scale (one anchor per cell)."""

    def __init__(self, *, in_channels: int, feat_channels: int, stacked_convs: int, num_levels: int,
                 num_classes: int, reg_max: int = 16, num_groups: int | None = 32, norm_requires_grad: bool = True):
        super().__init__()

        def tower():
            return nn.ModuleList(TowerConv(in_channels if i == 0 else feat_channels, feat_channels,
                                           num_groups=num_groups, bias=num_groups is None,
                                           norm_requires_grad=norm_requires_grad)
                                 for i in range(stacked_convs))
        self.cls_convs, self.reg_convs = tower(), tower()
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        self.integral = Integral(reg_max)
        self.num_classes, self.reg_channels = num_classes, 4 * (reg_max + 1)
        for m in self.modules():                          # init_cfg: Normal(std=0.01) on every Conv2d
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        nn.init.constant_(self.gfl_cls.bias, bias_init_with_prob(0.01))

    @classmethod
    def from_config(cls, head: dict, *, in_channels: int, num_levels: int, num_classes: int) -> "GFLHeadModule":
        """The module of a ``bbox_head`` dict (mmdetection's defaults where it is silent)."""
        norm = head.get("norm_cfg", {"type": "GN", "num_groups": 32, "requires_grad": True})
        return cls(in_channels=in_channels, feat_channels=head.get("feat_channels", 256),
                   stacked_convs=head.get("stacked_convs", 4), num_levels=num_levels, num_classes=num_classes,
                   reg_max=head.get("reg_max", 16), num_groups=None if norm is None else norm.get("num_groups", 32),
                   norm_requires_grad=True if norm is None else norm.get("requires_grad", True))

    def forward_single(self, x: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """One level: class logits (B, C, H, W), distribution logits (B, 4 * (reg_max + 1), H, W)."""
        cls_feat, reg_feat = x, x
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        return self.gfl_cls(cls_feat), self.scales[level](self.gfl_reg(reg_feat)).float()

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        outs = [self.forward_single(f, i) for i, f in enumerate(feats)]
        cls = flatten_levels([c for c, _ in outs], self.num_classes)             # (B, A, C)
        return cls, flatten_levels([r for _, r in outs], self.reg_channels)      # (B, A, 4 (n + 1))
