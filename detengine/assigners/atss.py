"""ATSS (Zhang et al. 2020, "Bridging the Gap Between Anchor-based and Anchor-free Detection",
sec. 3.1, Algorithm 1), as mmdetection's ``ATSSAssigner``."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..boxes import bbox_overlaps
from .max_iou import _empty_result, labels_from_gt_inds
from .result import AssignResult, Reason, assign_images, ignores_given, unassigned

__all__ = ["ATSSAssigner"]

INF = 100000000


class ATSSAssigner:
    """Per level, the ``topk`` priors whose centres are nearest each GT centre are candidates;
    a candidate is positive when its IoU >= mean + std (unbiased) of the candidates' IoUs and its
    centre lies inside the GT by more than 0.01. A prior claimed twice takes the higher IoU
    (ties to the first GT). Non-positives get ``max_overlaps = -1e8``, as the reference.
    """

    def __init__(self, *, topk: int = 9, ignore_iof_thr: float = -1, iou_calculator=None):
        self.topk = int(topk)
        self.ignore_iof_thr = ignore_iof_thr
        self._layouts: dict = {}

    def assign(self, priors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *,
               num_level_priors: list[int] | None = None, gt_boxes_ignore: Tensor | None = None,
               **unused) -> AssignResult:
        """``priors`` (Tensor[A, 4] xyxy) concatenated over levels of ``num_level_priors``."""
        if num_level_priors is None:
            raise ValueError("ATSSAssigner needs num_level_priors (priors per level)")
        priors = priors[:, :4]
        num_gt, num_priors = gt_boxes.shape[0], priors.shape[0]
        if num_gt == 0 or num_priors == 0:
            return _empty_result(int(num_gt), priors)
        overlaps = bbox_overlaps(priors, gt_boxes)  # (A, G)
        gt_inds = overlaps.new_full((num_priors,), 0, dtype=torch.long)
        reasons = torch.full((num_priors,), Reason.NOT_TOPK_CANDIDATE, dtype=torch.uint8, device=priors.device)
        gt_points = torch.stack(((gt_boxes[:, 0] + gt_boxes[:, 2]) / 2.0, (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2.0), dim=1)
        priors_cx = (priors[:, 0] + priors[:, 2]) / 2.0
        priors_cy = (priors[:, 1] + priors[:, 3]) / 2.0
        prior_points = torch.stack((priors_cx, priors_cy), dim=1)
        distances = (prior_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()  # (A, G)
        ignored = self._ignored_mask(priors, gt_boxes_ignore)
        if ignored is not None:
            distances[ignored, :] = INF
            gt_inds[ignored] = -1
            reasons[ignored] = Reason.IGNORED_CROWD
        candidate_idxs = self._candidates(distances, num_level_priors)  # (L * k, G)
        candidate_overlaps = overlaps[candidate_idxs, torch.arange(num_gt)]
        thr = candidate_overlaps.mean(0) + candidate_overlaps.std(0)  # (G,)
        is_pos = candidate_overlaps >= thr[None, :]
        is_in = self._centers_inside(priors_cx, priors_cy, candidate_idxs, gt_boxes)
        self._mark_candidates(reasons, candidate_idxs, is_pos, is_in)
        is_pos = is_pos & is_in
        max_overlaps, argmax = self._resolve(overlaps, candidate_idxs, is_pos)
        pos = max_overlaps != -INF
        gt_inds[pos] = argmax[pos] + 1
        reasons[pos] = Reason.POS_ATSS
        labels = labels_from_gt_inds(gt_inds, gt_labels)
        extras = {"iou": overlaps.t(), "atss_threshold": thr, "candidate_idxs": candidate_idxs.t()}
        return AssignResult(int(num_gt), gt_inds, max_overlaps, labels, reasons, extras)

    def assign_batch(self, priors: Tensor, inside: Tensor, gts, *, num_level_priors=None, gt_boxes_ignore=None,
                     **unused) -> Tensor | None:
        """A batch's assignment in one pass: (B, A) ``gt_inds`` of each image as :meth:`assign` on its
        ``inside`` priors gives them (-1 outside); ``gts`` a :class:`~detengine.heads.base.PaddedGTs`.
        Each level's candidates come from one sorted top-(k + 1) of the batch: the same candidates as
        each image's own top-k unless the k-th and (k+1)-th distances tie, in the same order unless two
        inside the k tie (``torch.topk``'s order among them is its own), which only matters where their
        IoUs differ (the threshold's float mean and std). An image with such a tie, or with a level of
        fewer than k priors inside, is assigned on its own; None where ignored boxes take part."""
        if num_level_priors is None:
            raise ValueError("ATSSAssigner needs num_level_priors (priors per level)")
        if ignores_given(self.ignore_iof_thr, gt_boxes_ignore):
            return None
        priors = priors[:, :4]
        (b, g), a = gts.mask.shape, int(priors.shape[0])
        outside = torch.full((), -1, dtype=torch.long, device=priors.device)
        if g == 0 or a == 0:
            return unassigned(inside)
        boxes = gts.boxes
        overlaps = bbox_overlaps(priors, boxes.reshape(-1, 4)).view(a, b, g).permute(1, 0, 2)       # (B, A, G)
        gt_points = torch.stack(((boxes[..., 0] + boxes[..., 2]) / 2.0, (boxes[..., 1] + boxes[..., 3]) / 2.0), dim=-1)
        priors_cx = (priors[:, 0] + priors[:, 2]) / 2.0
        priors_cy = (priors[:, 1] + priors[:, 3]) / 2.0
        prior_points = torch.stack((priors_cx, priors_cy), dim=1)
        distances = (prior_points[:, None, :] - gt_points[:, None, :, :]).pow(2).sum(-1).sqrt()      # (B, A, G)
        distances = distances.masked_fill(~inside[:, :, None], torch.inf)
        candidate_idxs, own = self._batch_candidates(distances, overlaps, gts.mask, num_level_priors)  # (B, K, G)
        candidate_overlaps = overlaps.gather(1, candidate_idxs)
        thr = candidate_overlaps.mean(1) + candidate_overlaps.std(1)                                  # (B, G)
        cx, cy = priors_cx[candidate_idxs], priors_cy[candidate_idxs]                                 # (B, K, G)
        gb = boxes[:, None]                                                                           # (B, 1, G, 4)
        is_in = torch.stack([cx - gb[..., 0], cy - gb[..., 1], gb[..., 2] - cx, gb[..., 3] - cy], dim=-1) \
            .min(dim=-1).values > 0.01
        is_pos = (candidate_overlaps >= thr[:, None, :]) & is_in & gts.mask[:, None, :]
        masked = torch.full_like(overlaps, -INF)
        masked.scatter_(1, candidate_idxs, torch.where(is_pos, candidate_overlaps, -INF))
        max_overlaps, argmax = masked.max(dim=2)
        gt_inds = torch.where(max_overlaps != -INF, argmax + 1, 0)
        gt_inds = torch.where(inside, gt_inds, outside)
        rows = own.nonzero().view(-1).tolist()
        if rows:
            gt_inds[rows] = assign_images(self.assign, priors, inside, gts, rows, num_level_priors)[0]
        return gt_inds

    def _batch_candidates(self, distances: Tensor, overlaps: Tensor, mask: Tensor, num_level_priors):
        """Every level's candidates at once: the levels' distances laid side by side, padded with inf to
        the largest level ((B, L, C, G)), and one top-(k + 1) along C (a loop over the levels cost ~13
        launches a level on a GPU). The candidates (B, K, G) in level order as :meth:`_candidates`, and
        (B,) the images whose own top-k could differ: a tie at the k-th place changes the set, one inside
        the k only the order, which the threshold's mean and std see unless the tied priors' IoUs are
        equal (a symmetric grid); an inf at the k-th place (fewer than k priors inside)."""
        b, _, g = distances.shape
        layout = self._level_layout(num_level_priors, distances.device)
        n_levels, width = layout["prior"].shape
        padded = distances.index_select(1, layout["prior"].view(-1)).view(b, n_levels, width, g)
        padded = padded.masked_fill_(layout["pad"][None, :, :, None], torch.inf)
        values, idx = padded.topk(layout["q"], dim=2, largest=False)                             # (B, L, Q, G)
        prior = layout["prior"][None, :, :, None].expand(b, -1, -1, g).gather(2, idx)
        ious = overlaps.gather(1, prior.view(b, -1, g)).view(prior.shape)
        run = values[:, :, 1:] == values[:, :, :-1]
        tied = (run & ((ious[:, :, 1:] != ious[:, :, :-1]) & layout["inner"] | layout["kth"])).any(dim=2)
        tied |= (torch.isinf(values) & layout["kslot"]).any(dim=2)                                  # (B, L, G)
        own = (tied.any(dim=1) & mask).any(dim=1)
        return prior.view(b, -1, g).index_select(1, layout["take"]), own

    def _level_layout(self, num_level_priors, device) -> dict[str, Tensor]:
        """Index tables of :meth:`_batch_candidates` for one level layout, made once: each level's
        prior indices padded to the largest level (``pad``: the padding), the top-(k + 1)'s width ``q``,
        and over its places: ``inner`` the pairs inside the k, ``kth`` the pair k-th / (k+1)-th where the
        level has a (k+1)-th, ``kslot`` the k-th place, ``take`` the k candidates of each level."""
        key = (tuple(num_level_priors), self.topk, device)
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        counts = [int(c) for c in num_level_priors]
        width, starts = max(max(counts, default=0), 1), np.cumsum([0] + counts[:-1])
        ks = [min(self.topk, c) for c in counts]
        q = max([min(k + 1, c) for k, c in zip(ks, counts)] + [1])
        slot = np.arange(width)
        prior = np.stack([np.where(slot < c, s + slot, 0) for s, c in zip(starts, counts)])
        pairs = np.arange(q - 1)
        layout = {"prior": prior, "pad": np.stack([slot >= c for c in counts]),
                  "inner": np.stack([pairs < k - 1 for k in ks]),
                  "kth": np.stack([(pairs == k - 1) & (c > k) for k, c in zip(ks, counts)]),
                  "kslot": np.stack([np.arange(q) == k - 1 for k in ks]),
                  "take": np.concatenate([level * q + np.arange(k) for level, k in enumerate(ks)])}
        layout = {name: torch.as_tensor(v).to(device) for name, v in layout.items()}
        for name in ("inner", "kth", "kslot"):
            layout[name] = layout[name][:, :, None]                                              # (L, places, 1)
        layout["q"] = q
        self._layouts[key] = layout
        return layout

    def _ignored_mask(self, priors, gt_boxes_ignore):
        if not (self.ignore_iof_thr > 0 and gt_boxes_ignore is not None and gt_boxes_ignore.numel() > 0):
            return None
        return bbox_overlaps(priors, gt_boxes_ignore, mode="iof").max(dim=1).values > self.ignore_iof_thr

    def _candidates(self, distances: Tensor, num_level_priors) -> Tensor:
        """(sum_l min(k, A_l), G) flat indices of the k nearest priors of each GT, per level."""
        out, start = [], 0
        for count in num_level_priors:
            end = start + count
            if count > 0:
                k = min(self.topk, count)
                _, idx = distances[start:end, :].topk(k, dim=0, largest=False)
                out.append(idx + start)
            start = end
        return torch.cat(out, dim=0)

    @staticmethod
    def _centers_inside(priors_cx, priors_cy, candidate_idxs, gt_boxes) -> Tensor:
        """(K, G) candidate centre inside its GT by more than 0.01 on every side."""
        cx, cy = priors_cx[candidate_idxs], priors_cy[candidate_idxs]  # (K, G)
        l_ = cx - gt_boxes[:, 0]
        t_ = cy - gt_boxes[:, 1]
        r_ = gt_boxes[:, 2] - cx
        b_ = gt_boxes[:, 3] - cy
        return torch.stack([l_, t_, r_, b_], dim=1).min(dim=1)[0] > 0.01

    @staticmethod
    def _resolve(overlaps: Tensor, candidate_idxs: Tensor, is_pos: Tensor) -> tuple[Tensor, Tensor]:
        """Per prior, the highest IoU among GTs that made it positive (-INF where none)."""
        num_gt = overlaps.shape[1]
        masked = torch.full_like(overlaps, -INF)  # (A, G)
        gt_col = torch.arange(num_gt, device=overlaps.device).expand_as(candidate_idxs)
        rows, cols = candidate_idxs[is_pos], gt_col[is_pos]
        masked[rows, cols] = overlaps[rows, cols]
        return masked.max(dim=1)

    @staticmethod
    def _mark_candidates(reasons, candidate_idxs, is_pos, is_in) -> None:
        """Best stage each candidate prior reached for any GT (the GUI's "Why?")."""
        for mask, code in ((torch.ones_like(is_pos), Reason.BELOW_ATSS_THR),
                           (is_pos & ~is_in, Reason.CENTER_OUTSIDE_GT)):
            idx = candidate_idxs[mask]
            keep = reasons[idx] != Reason.IGNORED_CROWD
            reasons[idx[keep]] = code
