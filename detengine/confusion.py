"""A detection confusion matrix as Ultralytics draws one: the classes plus background, counted
at one IoU threshold over the detections above one score threshold.

Rows are the predicted class, columns the true class, index C (the last) is background:
``matrix[p, t]`` counts detections of class p matched to a GT of class t (the diagonal are the
correct ones), ``matrix[C, t]`` GTs of class t that no detection found (missed), ``matrix[p, C]``
detections of class p that matched no GT (false positives on background).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from .boxes import box_iou

__all__ = ["CONFUSION_IOU", "CONFUSION_SCORE", "confusion_matrix_per_image", "confusion_matrix"]

CONFUSION_IOU = 0.5      # COCO's AP50 threshold
CONFUSION_SCORE = 0.25   # Ultralytics' default confidence for its confusion matrix


def confusion_matrix_per_image(pred_boxes: Tensor, pred_labels: Tensor, pred_scores: Tensor, gt_boxes: Tensor,
                               gt_labels: Tensor, num_classes: int, *, iou_thr: float = CONFUSION_IOU,
                               score_thr: float = CONFUSION_SCORE) -> np.ndarray:
    """(C + 1, C + 1) int64 counts of one image (layout in the module docstring).

    Args:
        pred_boxes (Tensor[D, 4]): xyxy. pred_labels (Tensor[D]): 0..C-1. pred_scores (Tensor[D]).
        gt_boxes (Tensor[G, 4]): xyxy, crowd boxes left out by the caller. gt_labels (Tensor[G]).

    Detections scoring above ``score_thr`` are matched to GTs one to one whatever their classes
    (a detection of the wrong class on a GT is a confusion, not a false positive), greedily by
    descending IoU among the pairs with IoU above ``iou_thr``."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    kept = pred_scores > score_thr
    pred_boxes, pred_labels = pred_boxes[kept], pred_labels[kept]
    iou = box_iou(gt_boxes.float(), pred_boxes.float())  # (G, D)
    gt_of_pred = _greedy_pairs(iou, iou_thr)              # (D,) the matched GT, -1 for none
    pred_list, gt_list = pred_labels.tolist(), gt_labels.tolist()
    found = set()
    for d, g in enumerate(gt_of_pred):
        if g >= 0:
            matrix[pred_list[d], gt_list[g]] += 1
            found.add(g)
        else:
            matrix[pred_list[d], num_classes] += 1
    for g, label in enumerate(gt_list):
        if g not in found:
            matrix[num_classes, label] += 1
    return matrix


def _greedy_pairs(iou: Tensor, iou_thr: float) -> list[int]:
    """iou (G, D): the GT each detection takes, -1 for none, pairing by descending IoU."""
    gt_of_pred = [-1] * iou.shape[1]
    if iou.numel() == 0:
        return gt_of_pred
    g_idx, d_idx = torch.nonzero(iou > iou_thr, as_tuple=True)
    order = torch.argsort(iou[g_idx, d_idx], descending=True, stable=True)
    taken_gt = set()
    for g, d in zip(g_idx[order].tolist(), d_idx[order].tolist()):
        if g not in taken_gt and gt_of_pred[d] < 0:
            gt_of_pred[d] = g
            taken_gt.add(g)
    return gt_of_pred


def confusion_matrix(per_image: Iterable[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]], num_classes: int, *,
                     iou_thr: float = CONFUSION_IOU, score_thr: float = CONFUSION_SCORE) -> np.ndarray:
    """The sum of :func:`confusion_matrix_per_image` over ``(pred_boxes, pred_labels, pred_scores,
    gt_boxes, gt_labels)`` tuples, one per image; no images: zeros."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels in per_image:
        matrix += confusion_matrix_per_image(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels, num_classes,
                                             iou_thr=iou_thr, score_thr=score_thr)
    return matrix
