"""ATSS's head network (mmdetection 3.3.0 ``ATSSHead``), parameter names as mmdetection's under
``head.``: ``cls_convs.N.conv`` / ``.gn``, ``reg_convs.N.conv`` / ``.gn``, ``atss_cls``,
``atss_reg``, ``atss_centerness``, ``scales.N.scale``."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .fcos import Scale, TowerConv
from .layers import bias_init_with_prob, flatten_levels, normal_init

__all__ = ["ATSSHeadModule"]


class ATSSHeadModule(nn.Module):
    """Class and box towers shared across levels; per level ``(B, A, C + 1)`` class logits with the
    centerness logit (from the box tower) last, and ``(B, A, 4)`` deltas times the level's scale."""

    def __init__(self, *, in_channels: int, feat_channels: int, stacked_convs: int, num_levels: int,
                 num_base_priors: int, num_classes: int, num_groups: int | None = 32, pred_kernel_size: int = 3,
                 norm_requires_grad: bool = True):
        super().__init__()

        def tower():
            return nn.ModuleList(TowerConv(in_channels if i == 0 else feat_channels, feat_channels,
                                           num_groups=num_groups, bias=num_groups is None,
                                           norm_requires_grad=norm_requires_grad)
                                 for i in range(stacked_convs))
        self.cls_convs, self.reg_convs = tower(), tower()
        pad = pred_kernel_size // 2
        self.atss_cls = nn.Conv2d(feat_channels, num_base_priors * num_classes, pred_kernel_size, padding=pad)
        self.atss_reg = nn.Conv2d(feat_channels, num_base_priors * 4, pred_kernel_size, padding=pad)
        self.atss_centerness = nn.Conv2d(feat_channels, num_base_priors, pred_kernel_size, padding=pad)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        self.num_classes = num_classes
        for m in self.modules():                          # init_cfg: Normal(std=0.01) on every Conv2d
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        nn.init.constant_(self.atss_cls.bias, bias_init_with_prob(0.01))

    @classmethod
    def from_config(cls, head: dict, *, in_channels: int, num_levels: int, num_base_priors: int,
                    num_classes: int) -> "ATSSHeadModule":
        """The module of a ``bbox_head`` dict (mmdetection's defaults where it is silent)."""
        norm = head.get("norm_cfg", {"type": "GN", "num_groups": 32, "requires_grad": True})
        return cls(in_channels=in_channels, feat_channels=head.get("feat_channels", 256),
                   stacked_convs=head.get("stacked_convs", 4), num_levels=num_levels,
                   num_base_priors=num_base_priors, num_classes=num_classes,
                   num_groups=None if norm is None else norm.get("num_groups", 32),
                   pred_kernel_size=head.get("pred_kernel_size", 3),
                   norm_requires_grad=True if norm is None else norm.get("requires_grad", True))

    def forward_single(self, x: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
        """One level: class logits (B, A*C, H, W), deltas (B, A*4, H, W), centerness (B, A, H, W)."""
        cls_feat, reg_feat = x, x
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        bbox_pred = self.scales[level](self.atss_reg(reg_feat)).float()
        return self.atss_cls(cls_feat), bbox_pred, self.atss_centerness(reg_feat)

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        outs = [self.forward_single(f, i) for i, f in enumerate(feats)]
        cls = flatten_levels([c for c, _, _ in outs], self.num_classes)          # (B, A, C)
        ctr = flatten_levels([t for _, _, t in outs], 1)                         # (B, A, 1)
        return torch.cat([cls, ctr], dim=-1), flatten_levels([r for _, r, _ in outs], 4)
