"""One image, a few steps: every shipped detector family (TinySSD, SSD300, RetinaNet, RTMDet) can
learn: its loss falls below a quarter of its peak and its top box lands on a GT. (Apart from
test_training.py so that xdist's file-wise distribution can run it beside the training-loop tests.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.boxes import box_iou
from detengine.models import build_detector
from detengine.train.runner import load_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


# RTMDet's loss first RISES: at initialisation its boxes are points (IoU 0, so QFL targets and GIoU
# weights are ~0); once boxes grow the loss peaks, then falls. So compare against the peak.
# Sized to stay well under a minute on 2 cores (SSD300's VGG16 at 300x300 is the heaviest:
# ~1 s a step): each still takes the loss below a quarter of its peak and puts a box on a GT.
OVERFIT = [("tinyssd_banana", (256, 256), 40, 1e-3), ("ssd300_coco", (300, 300), 24, 1e-3),
           ("retinanet_r50_fpn_coco", (160, 160), 25, 8e-4), ("rtmdet_tiny_coco", (160, 160), 60, 3e-3)]


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,steps,lr", OVERFIT)
def test_one_image_overfit(name, shape, steps, lr):
    torch.manual_seed(0)
    cfg = load_cfg(CONFIGS / f"{name}.py")
    model_cfg = cfg["model"]
    model_cfg["bbox_head"]["num_classes"] = 3
    if name.startswith("retinanet"):
        model_cfg["backbone"] = dict(model_cfg["backbone"], depth=18, frozen_stages=-1, norm_eval=False,
                                     zero_init_residual=False)  # a random R18 that learns in 25 steps
        model_cfg["neck"] = dict(model_cfg["neck"], in_channels=[64, 128, 256, 512])
    model = build_detector(model_cfg)
    images = torch.rand(1, 3, *shape) * 2 - 1
    if name == "ssd300_coco":     # a random VGG16 kept fixed: the neck, head, matching and mining learn
        _freeze_and_remember(model.backbone, images)  # (VGG16 at 300x300 was 9/10 of a 1 s step)
    h, w = shape
    batch = {"images": images, "gt_boxes": [torch.tensor([[0.2 * w, 0.25 * h, 0.6 * w, 0.7 * h],
                                                          [0.65 * w, 0.1 * h, 0.9 * w, 0.4 * h]])],
             "gt_labels": [torch.tensor([1, 2])]}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for _ in range(steps):
        losses, _ = model.loss(batch)
        total = sum(losses.values())
        history.append(float(total.detach()))
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    final = float(sum(model.loss(batch)[0].values()).detach())
    assert final < max(history) / 4, f"{name}: loss {history[::5]} -> {final:.4f}"
    model.eval()
    best = model.predict(batch)[0]
    assert box_iou(best.boxes[:1], batch["gt_boxes"][0]).max() > 0.5, f"{name}: top box {best.boxes[:1]}"


def _freeze_and_remember(backbone: torch.nn.Module, images: torch.Tensor) -> None:
    """Fix ``backbone``'s weights and compute its features of ``images`` once: with nothing in it
    training (VGG16: no batch norm, no dropout) every later call would return the same tensors."""
    backbone.requires_grad_(False)
    with torch.no_grad():
        features = backbone(images)
    forward = backbone.forward

    def remembered(x):
        return features if x is images else forward(x)
    backbone.forward = remembered
