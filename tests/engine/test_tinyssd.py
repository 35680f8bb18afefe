"""TinySSD's speed-ups keep its numbers; the synthetic-data recipe config stays d2l's network."""
from __future__ import annotations

from pathlib import Path

import torch

from detengine.models import build_detector
from detengine.train.runner import load_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


def _batch(size: int, n: int = 2):
    g = torch.Generator().manual_seed(7)
    images = torch.randn(n, 3, size, size, generator=g)
    boxes = [torch.tensor([[0.1 * size, 0.2 * size, 0.5 * size, 0.7 * size],
                           [0.55 * size, 0.1 * size, 0.95 * size, 0.4 * size]])] * n
    labels = [torch.tensor([0, 2])] * n
    return {"images": images, "gt_boxes": boxes, "gt_labels": labels}


def test_channels_last_gives_the_same_outputs_losses_and_gradients():
    """The NHWC layout of TinySSDBaseNet is a memory layout only: same head outputs, losses and
    gradients as the default NCHW convolutions (to float rounding)."""
    cfg = load_cfg(CONFIGS / "tinyssd_banana.py")["model"]
    cfg["bbox_head"]["num_classes"] = 3
    torch.manual_seed(0)
    fast = build_detector(cfg)
    plain = build_detector(cfg)
    plain.load_state_dict(fast.state_dict())
    assert fast.backbone.channels_last  # the default
    plain.backbone.channels_last = False
    batch = _batch(256)
    results = []
    for model in (fast, plain):
        model.train()
        losses, _ = model.loss(batch)
        total = sum(losses.values())
        total.backward()
        cls, reg, sizes = model(batch["images"])
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((cls.detach(), reg.detach(), sizes, {k: v.detach() for k, v in losses.items()}, grads))
    (c1, r1, s1, l1, g1), (c2, r2, s2, l2, g2) = results
    assert s1 == s2 == [(32, 32), (16, 16), (8, 8), (4, 4), (1, 1)]
    torch.testing.assert_close(c1, c2, rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(r1, r2, rtol=1e-4, atol=2e-4)
    for k in l2:
        torch.testing.assert_close(l1[k], l2[k], rtol=1e-5, atol=1e-6)
    # Gradients per tensor, relative to its norm. Batch norm's backward cancels large terms, so
    # any change of summation order shows up amplified in the base net's gradients: against a
    # float64 reference, float32 NCHW itself is off by up to ~6e-3 and NHWC by up to ~2.5e-2.
    for a, b in zip(g1, g2):
        assert float((a - b).norm()) <= 3e-2 * float(b.norm()) + 1e-6


def test_channels_last_trains_like_nchw():
    """Ten AdamW steps from the same weights follow the same loss curve in either layout."""
    cfg = load_cfg(CONFIGS / "tinyssd_synthetic.py")["model"]
    torch.manual_seed(0)
    models = [build_detector(cfg), build_detector(cfg)]
    models[1].load_state_dict(models[0].state_dict())
    models[1].backbone.channels_last = False
    batch = _batch(cfg["bbox_head"]["anchor_generator"]["image_size"][0], n=4)
    curves = []
    for model in models:
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
        model.train()
        curve = []
        for _ in range(10):
            losses, _ = model.loss(batch)
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
            curve.append(float(total.detach()))
        curves.append(curve)
    assert curves[0][-1] < curves[0][0] / 2
    torch.testing.assert_close(torch.tensor(curves[0]), torch.tensor(curves[1]), rtol=2e-3, atol=1e-4)
