"""YOLOX's decoupled head network (mmdetection 3.3.0 ``YOLOXHead``), parameter names as mmdetection's
under ``head.`` instead of ``bbox_head.``: ``multi_level_cls_convs.L.K`` / ``multi_level_reg_convs.L.K``
(ConvModules ``.conv`` / ``.bn``, or ``.depthwise_conv`` / ``.pointwise_conv`` with ``use_depthwise``),
``multi_level_conv_cls.L``, ``multi_level_conv_reg.L``, ``multi_level_conv_obj.L``: nothing is shared
across levels.

Outputs per image, in point order (level, row, column): ``(B, A, C + 1)`` the C class logits with
the objectness logit last (the layout :class:`~detengine.heads.yolox.YOLOXHeadCore` reads), and
``(B, A, 4)`` the raw box regression ``(dx, dy, log w, log h)`` in stride units (what the L1 loss
compares; :meth:`~detengine.heads.yolox.YOLOXHeadCore.decode` makes boxes of it).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .csp_darknet import _conv, kaiming_init_convs
from .layers import bias_init_with_prob, flatten_levels

__all__ = ["YOLOXHeadModule"]


class YOLOXHeadModule(nn.Module):
    """Per level: ``stacked_convs`` 3x3 ConvModules (BN, Swish) for classification and for the box
    / objectness branch, then 1x1 predictors of the C classes, the 4 box values and the objectness.

    Initialisation as ``YOLOXHead.init_weights``: mmdetection's ``Kaiming`` ``init_cfg`` on every
    conv (bias 0), then the class and objectness biases ``bias_init_with_prob(0.01)``."""

    def __init__(self, *, in_channels: int, feat_channels: int = 256, stacked_convs: int = 2, num_levels: int = 3,
                 num_classes: int, use_depthwise: bool = False, act: str = "Swish"):
        super().__init__()
        self.num_classes = int(num_classes)

        def tower():
            return nn.Sequential(*[_conv(in_channels if i == 0 else feat_channels, feat_channels, 3, act=act,
                                         depthwise=use_depthwise) for i in range(stacked_convs)])
        self.multi_level_cls_convs = nn.ModuleList(tower() for _ in range(num_levels))
        self.multi_level_reg_convs = nn.ModuleList(tower() for _ in range(num_levels))
        self.multi_level_conv_cls = nn.ModuleList(nn.Conv2d(feat_channels, num_classes, 1) for _ in range(num_levels))
        self.multi_level_conv_reg = nn.ModuleList(nn.Conv2d(feat_channels, 4, 1) for _ in range(num_levels))
        self.multi_level_conv_obj = nn.ModuleList(nn.Conv2d(feat_channels, 1, 1) for _ in range(num_levels))
        self.init_weights()

    def init_weights(self) -> None:
        kaiming_init_convs(self)
        prior = bias_init_with_prob(0.01)
        for conv_cls, conv_obj in zip(self.multi_level_conv_cls, self.multi_level_conv_obj):
            nn.init.constant_(conv_cls.bias, prior)
            nn.init.constant_(conv_obj.bias, prior)

    @classmethod
    def from_config(cls, head: dict, *, num_classes: int, num_levels: int) -> "YOLOXHeadModule":
        """The module of a ``bbox_head`` dict (mmdetection's defaults where it is silent)."""
        return cls(in_channels=head["in_channels"], feat_channels=head.get("feat_channels", 256),
                   stacked_convs=head.get("stacked_convs", 2), num_levels=num_levels, num_classes=num_classes,
                   use_depthwise=head.get("use_depthwise", False),
                   act=(head.get("act_cfg") or {"type": "Swish"})["type"])

    def forward_single(self, x: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
        """One level: class logits (B, C, H, W), box regression (B, 4, H, W), objectness (B, 1, H, W)."""
        cls_feat = self.multi_level_cls_convs[level](x)
        reg_feat = self.multi_level_reg_convs[level](x)
        return (self.multi_level_conv_cls[level](cls_feat), self.multi_level_conv_reg[level](reg_feat),
                self.multi_level_conv_obj[level](reg_feat))

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        outs = [self.forward_single(f, i) for i, f in enumerate(feats)]
        cls = flatten_levels([torch.cat([c, o], dim=1) for c, _, o in outs], self.num_classes + 1)   # (B, A, C+1)
        return cls, flatten_levels([r for _, r, _ in outs], 4)                                       # (B, A, 4)
