"""Box coders: what a regression head predicts relative to a prior, and back."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from .transfers import constant

__all__ = ["DeltaXYWHBBoxCoder", "LegacyDeltaXYWHBBoxCoder", "DistancePointBBoxCoder", "D2LOffsetCoder"]


def _clip_(boxes: Tensor, max_shape) -> Tensor:
    """In place: x to [0, w], y to [0, h] of ``max_shape = (h, w)``."""
    boxes[..., 0::2].clamp_(min=0, max=max_shape[1])
    boxes[..., 1::2].clamp_(min=0, max=max_shape[0])
    return boxes


def _encode(priors: Tensor, gt_boxes: Tensor, means, stds, pixel: float) -> Tensor:
    """R-CNN deltas, ``(d - means) / stds``; ``pixel=1`` counts widths as ``x2 - x1 + 1`` (mmdetection 1.x)."""
    if priors.shape != gt_boxes.shape:
        raise ValueError(f"priors {tuple(priors.shape)} and gt_boxes {tuple(gt_boxes.shape)} differ")
    p, g = priors.float(), gt_boxes.float()
    px, py = (p[..., 0] + p[..., 2]) * 0.5, (p[..., 1] + p[..., 3]) * 0.5
    gx, gy = (g[..., 0] + g[..., 2]) * 0.5, (g[..., 1] + g[..., 3]) * 0.5
    pw, ph = p[..., 2] - p[..., 0], p[..., 3] - p[..., 1]
    gw, gh = g[..., 2] - g[..., 0], g[..., 3] - g[..., 1]
    if pixel:
        pw, ph, gw, gh = pw + pixel, ph + pixel, gw + pixel, gh + pixel
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
    return deltas.sub_(constant(means, deltas)).div_(constant(stds, deltas))


class DeltaXYWHBBoxCoder:
    """R-CNN deltas (Girshick et al. 2014, appendix C), mmdetection's ``DeltaXYWHBBoxCoder``.

    encode: ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))``, then
    ``(d - means) / stds``. decode: de-normalise, clamp dw, dh to ``|log(wh_ratio_clip)|``,
    apply, clip to ``max_shape = (h, w)`` when given and ``clip_border``. SSD uses
    stds (0.1, 0.1, 0.2, 0.2) (the "variances" of the SSD paper's code).
    """

    def __init__(self, *, target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(1.0, 1.0, 1.0, 1.0),
                 clip_border: bool = True, add_ctr_clamp: bool = False, ctr_clamp: int = 32,
                 wh_ratio_clip: float = 16 / 1000):
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = ctr_clamp
        self.wh_ratio_clip = wh_ratio_clip

    def encode(self, priors: Tensor, gt_boxes: Tensor) -> Tensor:
        """(N, 4) deltas of ``gt_boxes`` (N, 4) xyxy relative to ``priors`` (N, 4) xyxy."""
        return _encode(priors, gt_boxes, self.means, self.stds, pixel=0.0)

    def decode(self, priors: Tensor, deltas: Tensor, max_shape=None) -> Tensor:
        """Boxes from ``deltas`` (N, 4C) or (B, N, 4C) and ``priors`` (N, 4) / (B, N, 4) xyxy."""
        if deltas.dim() == 3:
            b, n, k = deltas.shape
            pri = priors.expand(b, n, 4).reshape(b * n, 4)
            return self.decode(pri, deltas.reshape(b * n, k), max_shape).reshape(b, n, k)
        num_boxes, num_classes = deltas.size(0), deltas.size(1) // 4
        if num_boxes == 0:
            return deltas
        d = deltas.reshape(-1, 4)
        d = d * constant(self.stds, d).view(1, -1) + constant(self.means, d).view(1, -1)
        dxy, dwh = d[:, :2], d[:, 2:]
        pri = priors.repeat(1, num_classes).reshape(-1, 4)
        pxy = (pri[:, :2] + pri[:, 2:]) * 0.5
        pwh = pri[:, 2:] - pri[:, :2]
        dxy_wh = pwh * dxy
        max_ratio = np.abs(np.log(self.wh_ratio_clip))
        if self.add_ctr_clamp:
            dxy_wh = torch.clamp(dxy_wh, max=self.ctr_clamp, min=-self.ctr_clamp)
            dwh = torch.clamp(dwh, max=max_ratio)
        else:
            dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
        gxy = pxy + dxy_wh
        gwh = pwh * dwh.exp()
        boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
        if self.clip_border and max_shape is not None:
            _clip_(boxes, max_shape)
        return boxes.reshape(num_boxes, -1)


class LegacyDeltaXYWHBBoxCoder:
    """mmdetection 1.x's deltas (``LegacyDeltaXYWHBBoxCoder``, its ``legacy_1.x`` configs): widths
    and heights count pixels, ``x2 - x1 + 1``. decode clamps dw, dh to ``|log(wh_ratio_clip)|``
    and, given ``max_shape = (h, w)``, the corners to ``[0, w - 1]`` / ``[0, h - 1]``."""

    def __init__(self, *, target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(1.0, 1.0, 1.0, 1.0),
                 wh_ratio_clip: float = 16 / 1000):
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.wh_ratio_clip = wh_ratio_clip

    def encode(self, priors: Tensor, gt_boxes: Tensor) -> Tensor:
        return _encode(priors, gt_boxes, self.means, self.stds, pixel=1.0)

    def decode(self, priors: Tensor, deltas: Tensor, max_shape=None) -> Tensor:
        if deltas.dim() == 3:
            b, n, k = deltas.shape
            pri = priors.expand(b, n, 4).reshape(b * n, 4)
            return self.decode(pri, deltas.reshape(b * n, k), max_shape).reshape(b, n, k)
        if deltas.size(0) == 0:
            return deltas
        reps = deltas.size(1) // 4
        d = deltas * constant(self.stds, deltas).repeat(1, reps) + constant(self.means, deltas).repeat(1, reps)
        dx, dy, dw, dh = d[:, 0::4], d[:, 1::4], d[:, 2::4], d[:, 3::4]
        max_ratio = np.abs(np.log(self.wh_ratio_clip))
        dw, dh = dw.clamp(min=-max_ratio, max=max_ratio), dh.clamp(min=-max_ratio, max=max_ratio)
        px = ((priors[:, 0] + priors[:, 2]) * 0.5).unsqueeze(1).expand_as(dx)
        py = ((priors[:, 1] + priors[:, 3]) * 0.5).unsqueeze(1).expand_as(dy)
        pw = (priors[:, 2] - priors[:, 0] + 1.0).unsqueeze(1).expand_as(dw)
        ph = (priors[:, 3] - priors[:, 1] + 1.0).unsqueeze(1).expand_as(dh)
        gw, gh = pw * dw.exp(), ph * dh.exp()
        gx, gy = px + pw * dx, py + ph * dy
        x1, y1, x2, y2 = gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5
        if max_shape is not None:
            x1, x2 = x1.clamp(min=0, max=max_shape[1] - 1), x2.clamp(min=0, max=max_shape[1] - 1)
            y1, y2 = y1.clamp(min=0, max=max_shape[0] - 1), y2.clamp(min=0, max=max_shape[0] - 1)
        return torch.stack([x1, y1, x2, y2], dim=-1).view_as(deltas)


class DistancePointBBoxCoder:
    """FCOS / RTMDet: distances (left, top, right, bottom) from a point to the box sides."""

    def __init__(self, *, clip_border: bool = True):
        self.clip_border = clip_border

    def encode(self, points: Tensor, gt_boxes: Tensor, max_dis: float | None = None, eps: float = 0.1) -> Tensor:
        """(N, 4) distances of ``gt_boxes`` (N, 4) from ``points`` (N, 2+); clamped to
        ``[0, max_dis - eps]`` only when ``max_dis`` is given."""
        left = points[..., 0] - gt_boxes[..., 0]
        top = points[..., 1] - gt_boxes[..., 1]
        right = gt_boxes[..., 2] - points[..., 0]
        bottom = gt_boxes[..., 3] - points[..., 1]
        if max_dis is not None:
            left, top, right, bottom = (v.clamp(min=0, max=max_dis - eps) for v in (left, top, right, bottom))
        return torch.stack([left, top, right, bottom], -1)

    def decode(self, points: Tensor, distances: Tensor, max_shape=None) -> Tensor:
        """(N, 4) xyxy from ``points`` (N, 2+) and ``distances`` (N, 4)."""
        left, top, right, bottom = distances.unbind(-1)           # one backward node (a GPU's launches)
        x1 = points[..., 0] - left
        y1 = points[..., 1] - top
        x2 = points[..., 0] + right
        y2 = points[..., 1] + bottom
        boxes = torch.stack([x1, y1, x2, y2], -1)
        if self.clip_border and max_shape is not None:
            _clip_(boxes, max_shape)
        return boxes


class D2LOffsetCoder:
    """d2l's ``offset_boxes`` / ``offset_inverse`` (sec. 14.4.3): centre offsets x10 of the anchor
    size, ``5 * log(eps + g / a)`` for sizes; no clamping."""

    def __init__(self, *, eps: float = 1e-6):
        self.eps = eps

    def encode(self, priors: Tensor, gt_boxes: Tensor) -> Tensor:
        c_anc, c_gt = xyxy_to_cxcywh(priors), xyxy_to_cxcywh(gt_boxes)
        offset_xy = 10 * (c_gt[:, :2] - c_anc[:, :2]) / c_anc[:, 2:]
        offset_wh = 5 * torch.log(self.eps + c_gt[:, 2:] / c_anc[:, 2:])
        return torch.cat([offset_xy, offset_wh], dim=1)

    def decode(self, priors: Tensor, offsets: Tensor, max_shape=None) -> Tensor:
        anc = xyxy_to_cxcywh(priors)
        xy = offsets[:, :2] * anc[:, 2:] / 10 + anc[:, :2]
        wh = torch.exp(offsets[:, 2:] / 5) * anc[:, 2:]
        boxes = cxcywh_to_xyxy(torch.cat((xy, wh), dim=1))
        return _clip_(boxes, max_shape) if max_shape is not None else boxes
