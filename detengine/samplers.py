"""Samplers: which assigned priors enter the loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .assigners.result import AssignResult

__all__ = ["SamplingResult", "PseudoSampler", "hard_negative_mask", "batch_hard_negative_mask"]


@dataclass
class SamplingResult:
    """Positives and negatives of one image.

    pos_inds (Tensor[P] long), neg_inds (Tensor[N] long): flat prior indices.
    pos_assigned_gt_inds (Tensor[P] long): 0-based GT of each positive.
    pos_priors (Tensor[P, 4]), pos_gt_boxes (Tensor[P, 4]): the pairs the coder encodes.
    """

    pos_inds: Tensor
    neg_inds: Tensor
    pos_assigned_gt_inds: Tensor
    pos_priors: Tensor
    pos_gt_boxes: Tensor
    num_gts: int

    def __repr__(self) -> str:
        return (f"SamplingResult(pos={int(self.pos_inds.numel())}, neg={int(self.neg_inds.numel())}, "
                f"num_gts={self.num_gts})")


class PseudoSampler:
    """Takes every positive and every negative of the assignment (mmdetection ``PseudoSampler``)."""

    def sample(self, assign_result: AssignResult, priors: Tensor, gt_boxes: Tensor) -> SamplingResult:
        pos_inds = torch.nonzero(assign_result.gt_inds > 0, as_tuple=False).squeeze(-1)  # sorted, unique
        neg_inds = torch.nonzero(assign_result.gt_inds == 0, as_tuple=False).squeeze(-1)
        pos_gt = assign_result.gt_inds[pos_inds] - 1
        if gt_boxes.numel() == 0:
            pos_gt_boxes = gt_boxes.new_zeros((0, 4))
        else:
            pos_gt_boxes = gt_boxes.view(-1, 4)[pos_gt, :]
        return SamplingResult(pos_inds, neg_inds, pos_gt, priors[pos_inds], pos_gt_boxes,
                              assign_result.num_gts)


def hard_negative_mask(loss_cls: Tensor, pos_mask: Tensor, neg_mask: Tensor, neg_pos_ratio: int = 3,
                       mode: str = "mmdet") -> Tensor:
    """Online hard-negative mining (SSD paper sec. 2.2, "hard negative mining").

    Args:
        loss_cls (Tensor[A]): per-prior classification loss.
        pos_mask, neg_mask (Tensor[A] bool): positives and candidate negatives.
        neg_pos_ratio: negatives kept per positive.
        mode: ``"mmdet"`` (SSDHead: ``topk`` of the negatives' losses, at most all negatives;
            no positive, no negative) or ``"ssd_pytorch"`` (MultiBoxLoss: double sort with
            positives' losses zeroed, ``num_neg = min(ratio * num_pos, A - 1)``).
    Returns:
        (Tensor[A] bool) the mined negatives.
    """
    num_pos = int(pos_mask.sum())
    mask = torch.zeros_like(pos_mask)
    if mode == "mmdet":
        neg_inds = neg_mask.nonzero().view(-1)
        k = min(neg_pos_ratio * num_pos, int(neg_inds.numel()))
        if k > 0:
            _, top = loss_cls[neg_inds].topk(k)
            mask[neg_inds[top]] = True
        return mask
    if mode == "ssd_pytorch":
        loss = loss_cls.detach().clone()
        loss[pos_mask] = 0
        _, loss_idx = loss.sort(0, descending=True)
        _, idx_rank = loss_idx.sort(0)
        num_neg = min(neg_pos_ratio * num_pos, int(pos_mask.numel()) - 1)
        return (idx_rank < num_neg) & ~pos_mask      # a positive ranked among tied zeros is counted once
    raise ValueError(f"mode must be 'mmdet' or 'ssd_pytorch', got {mode!r}")


def batch_hard_negative_mask(loss_cls: Tensor, pos_mask: Tensor, neg_mask: Tensor, neg_pos_ratio: int = 3,
                             mode: str = "mmdet") -> Tensor:
    """(B, A) :func:`hard_negative_mask` of each of a batch's images from one top-k of the batch's (B, A)
    losses: each image's k hardest are those at least its k-th largest loss, the very set its own
    ``topk`` (or double sort) takes unless the k-th and (k+1)-th losses tie (or a loss is NaN), where
    which tied prior is taken is the kernel's choice: such an image is mined on its own."""
    b, a = loss_cls.shape
    num_pos = pos_mask.sum(dim=1)
    if mode == "mmdet":
        pool = neg_mask
        k = torch.minimum(neg_pos_ratio * num_pos, pool.sum(dim=1))
        ranked = loss_cls.detach().masked_fill(~pool, -torch.inf)
    elif mode == "ssd_pytorch":
        pool = ~pos_mask
        k = (neg_pos_ratio * num_pos).clamp(max=a - 1)
        ranked = loss_cls.detach().masked_fill(pos_mask, 0)
    else:
        raise ValueError(f"mode must be 'mmdet' or 'ssd_pytorch', got {mode!r}")
    most = int(k.max()) if b > 0 else 0
    if most == 0:
        return torch.zeros_like(pos_mask)
    values = ranked.topk(min(most + 1, a), dim=1).values                                # NaN first
    kth = values.gather(1, (k - 1).clamp(min=0)[:, None])
    after = values.gather(1, k.clamp(max=a - 1)[:, None])
    hard = (ranked >= kth) & pool & (k > 0)[:, None]
    own = ((k > 0) & (k < a) & (kth == after)[:, 0]) | values[:, 0].isnan()
    for row in own.nonzero().view(-1).tolist():
        hard[row] = hard_negative_mask(loss_cls[row], pos_mask[row], neg_mask[row], neg_pos_ratio, mode)
    return hard
