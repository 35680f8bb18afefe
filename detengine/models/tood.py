"""TOOD's task-aligned head (T-head, Feng et al. 2021 sec. 3.1), as mmdetection 3.3.0's ``TOODHead``,
parameter names as mmdetection's under ``head.``: ``inter_convs.N.conv`` / ``.gn``,
``cls_decomp`` / ``reg_decomp`` (``layer_attention.0`` / ``.2``, ``reduction_conv.conv`` / ``.gn``),
``tood_cls``, ``tood_reg``, ``cls_prob_module.0`` / ``.2``, ``reg_offset_module.0`` / ``.2``,
``scales.N.scale``. The box branch's feature sampling is ``torchvision.ops.deform_conv2d`` with
a ones kernel (bilinear sampling at the predicted offsets), as mmcv's ``deform_conv2d`` there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fcos import Scale, TowerConv
from .layers import bias_init_with_prob, flatten_levels, normal_init

__all__ = ["TOODHeadModule", "TaskDecomposition", "sigmoid_geometric_mean"]


class _SigmoidGeometricMean(torch.autograd.Function):
    """``sqrt(sigmoid(x) * sigmoid(y))`` with mmdetection's analytical gradient (finite where
    autograd's through the sqrt is not)."""

    @staticmethod
    def forward(ctx, x, y):
        x_sigmoid, y_sigmoid = x.sigmoid(), y.sigmoid()
        z = (x_sigmoid * y_sigmoid).sqrt()
        ctx.save_for_backward(x_sigmoid, y_sigmoid, z)
        return z

    @staticmethod
    def backward(ctx, grad_output):
        x_sigmoid, y_sigmoid, z = ctx.saved_tensors
        return grad_output * z * (1 - x_sigmoid) / 2, grad_output * z * (1 - y_sigmoid) / 2


sigmoid_geometric_mean = _SigmoidGeometricMean.apply


class _ReductionConv(nn.Module):
    """mmcv's ConvModule of the task decomposition (1x1 conv, GroupNorm ``gn``, ReLU); only its
    conv weight is used, scaled per input layer by the layer attention."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int | None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=num_groups is None)
        if num_groups is not None:
            self.gn = nn.GroupNorm(num_groups, out_channels)


class TaskDecomposition(nn.Module):
    """Layer attention over the stacked inter-conv features (sec. 3.1, eq. 2-3): one weight per
    layer from the pooled features, folded into the 1x1 reduction conv's weight."""

    def __init__(self, feat_channels: int, stacked_convs: int, la_down_rate: int, num_groups: int | None):
        super().__init__()
        self.feat_channels, self.stacked_convs = feat_channels, stacked_convs
        self.in_channels = feat_channels * stacked_convs
        self.layer_attention = nn.Sequential(nn.Conv2d(self.in_channels, self.in_channels // la_down_rate, 1),
                                             nn.ReLU(inplace=True),
                                             nn.Conv2d(self.in_channels // la_down_rate, stacked_convs, 1),
                                             nn.Sigmoid())
        self.reduction_conv = _ReductionConv(self.in_channels, feat_channels, num_groups)
        for m in self.layer_attention.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.001)
        normal_init(self.reduction_conv.conv, std=0.01)

    def forward(self, feat: Tensor, avg_feat: Tensor) -> Tensor:
        """(B, L * F, H, W) stacked features -> (B, F, H, W)."""
        b, _, h, w = feat.shape
        weight = self.layer_attention(avg_feat)                                     # (B, L, 1, 1)
        conv_weight = weight.reshape(b, 1, self.stacked_convs, 1) * self.reduction_conv.conv.weight.reshape(
            1, self.feat_channels, self.stacked_convs, self.feat_channels)
        conv_weight = conv_weight.reshape(b, self.feat_channels, self.in_channels)  # (B, F, L * F)
        out = torch.bmm(conv_weight, feat.reshape(b, self.in_channels, h * w)).reshape(b, self.feat_channels, h, w)
        if hasattr(self.reduction_conv, "gn"):
            out = self.reduction_conv.gn(out)
        return F.relu(out)


def _deform_sampling(feat: Tensor, offset: Tensor) -> Tensor:
    """Bilinear sampling of each channel of ``feat`` (B, C, H, W) at its own (dy, dx) offset."""
    from torchvision.ops import deform_conv2d
    return deform_conv2d(feat, offset, feat.new_ones(feat.shape[1], 1, 1, 1))


class TOODHeadModule(nn.Module):
    """Inter convs shared by both tasks, task decomposition, class logits and probability maps
    (their sigmoid geometric mean), box distances (``exp`` x scale from the anchor centre,
    ``anchor_free``; DeltaXYWH deltas, ``anchor_based``) resampled at learnt offsets. Outputs per
    image ``(B, A, C)`` class probabilities and ``(B, A, 4)`` boxes in input pixels."""

    def __init__(self, *, in_channels: int, feat_channels: int, stacked_convs: int, num_classes: int,
                 prior_generator, num_groups: int | None = 32, anchor_type: str = "anchor_free", bbox_coder=None,
                 norm_requires_grad: bool = True):
        super().__init__()
        self.inter_convs = nn.ModuleList(TowerConv(in_channels if i == 0 else feat_channels, feat_channels,
                                                   num_groups=num_groups, bias=num_groups is None,
                                                   norm_requires_grad=norm_requires_grad)
                                         for i in range(stacked_convs))
        self.cls_decomp = TaskDecomposition(feat_channels, stacked_convs, stacked_convs * 8, num_groups)
        self.reg_decomp = TaskDecomposition(feat_channels, stacked_convs, stacked_convs * 8, num_groups)
        self.tood_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.tood_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        stacked = feat_channels * stacked_convs
        self.cls_prob_module = nn.Sequential(nn.Conv2d(stacked, feat_channels // 4, 1), nn.ReLU(inplace=True),
                                             nn.Conv2d(feat_channels // 4, 1, 3, padding=1))
        self.reg_offset_module = nn.Sequential(nn.Conv2d(stacked, feat_channels // 4, 1), nn.ReLU(inplace=True),
                                               nn.Conv2d(feat_channels // 4, 4 * 2, 3, padding=1))
        self.scales = nn.ModuleList(Scale(1.0) for _ in prior_generator.strides)
        self.prior_generator, self.bbox_coder = prior_generator, bbox_coder
        self.num_classes, self.anchor_type = num_classes, anchor_type
        self._init_weights()

    def _init_weights(self) -> None:
        """``TOODHead.init_weights``."""
        bias_cls = bias_init_with_prob(0.01)
        for m in self.inter_convs:
            normal_init(m.conv, std=0.01)
        for m in self.cls_prob_module:
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        for m in self.reg_offset_module:
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.001)
        normal_init(self.cls_prob_module[-1], std=0.01, bias=bias_cls)
        normal_init(self.tood_cls, std=0.01, bias=bias_cls)
        normal_init(self.tood_reg, std=0.01)

    @classmethod
    def from_config(cls, head: dict, *, in_channels: int, num_classes: int, prior_generator,
                    bbox_coder) -> "TOODHeadModule":
        norm = head.get("norm_cfg", {"type": "GN", "num_groups": 32, "requires_grad": True})
        return cls(in_channels=in_channels, feat_channels=head.get("feat_channels", 256),
                   stacked_convs=head.get("stacked_convs", 4), num_classes=num_classes,
                   prior_generator=prior_generator, num_groups=None if norm is None else norm.get("num_groups", 32),
                   anchor_type=head.get("anchor_type", "anchor_free"), bbox_coder=bbox_coder,
                   norm_requires_grad=True if norm is None else norm.get("requires_grad", True))

    def _boxes(self, reg_feat: Tensor, level: int) -> Tensor:
        """(B, 4, H, W) boxes in stride units before the offset resampling."""
        b, _, h, w = reg_feat.shape
        stride = self.prior_generator.strides[level][0]
        anchors = self.prior_generator.single_level_grid_priors((h, w), level, device=reg_feat.device)
        anchors = torch.cat([anchors] * b)                                             # (B * H * W, 4)
        if self.anchor_type == "anchor_free":
            dist = self.scales[level](self.tood_reg(reg_feat).exp()).float().permute(0, 2, 3, 1).reshape(-1, 4)
            centers = torch.stack([(anchors[:, 2] + anchors[:, 0]) / 2, (anchors[:, 3] + anchors[:, 1]) / 2], -1)
            c = centers / stride
            boxes = torch.stack([c[:, 0] - dist[:, 0], c[:, 1] - dist[:, 1], c[:, 0] + dist[:, 2],
                                 c[:, 1] + dist[:, 3]], -1)
            return boxes.reshape(b, h, w, 4).permute(0, 3, 1, 2)
        deltas = self.scales[level](self.tood_reg(reg_feat)).float().permute(0, 2, 3, 1).reshape(-1, 4)
        return self.bbox_coder.decode(anchors, deltas).reshape(b, h, w, 4).permute(0, 3, 1, 2) / stride

    def forward_single(self, x: Tensor, level: int) -> tuple[Tensor, Tensor]:
        """One level: class probabilities (B, C, H, W), boxes in stride units (B, 4, H, W)."""
        inter = []
        for conv in self.inter_convs:
            x = conv(x)
            inter.append(x)
        feat = torch.cat(inter, 1)
        avg_feat = F.adaptive_avg_pool2d(feat, (1, 1))
        cls_feat, reg_feat = self.cls_decomp(feat, avg_feat), self.reg_decomp(feat, avg_feat)
        cls_score = sigmoid_geometric_mean(self.tood_cls(cls_feat), self.cls_prob_module(feat))
        reg_bbox = self._boxes(reg_feat, level)
        bbox_pred = _deform_sampling(reg_bbox.contiguous(), self.reg_offset_module(feat).contiguous())
        # resampled boxes turned inside out (x1 > x2 or y1 > y2) fall back to the unsampled ones
        invalid = ((bbox_pred[:, [0]] > bbox_pred[:, [2]]) | (bbox_pred[:, [1]] > bbox_pred[:, [3]])).expand_as(bbox_pred)
        return cls_score, torch.where(invalid, reg_bbox, bbox_pred)

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        outs = [self.forward_single(f, i) for i, f in enumerate(feats)]
        cls = flatten_levels([c for c, _ in outs], self.num_classes)                    # (B, A, C)
        boxes = [b * self.prior_generator.strides[i][0] for i, (_, b) in enumerate(outs)]
        return cls, flatten_levels(boxes, 4)                                            # (B, A, 4) pixels
