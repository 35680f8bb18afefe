"""TinySSD's speed-ups keep its numbers; the synthetic-data recipe config stays d2l's network."""
from __future__ import annotations

from pathlib import Path

import pytest
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
    for a, b in zip(g1, g2, strict=True):
        assert float((a - b).norm()) <= 3e-2 * float(b.norm()) + 1e-6


@pytest.mark.slow
def test_channels_last_trains_as_close_to_exact_as_nchw():
    """Eight SGD steps (d2l's lr 0.2 and loss) from the same weights: the NHWC float32 loss curve,
    like the NCHW one, stays within 1 % of a float64 run. At 128 px (a float64 run at 256 px took
    10 s on one core); measured on an AVX2 EPYC: NHWC 0.30 %, NCHW 1e-7 (at 256 px: 0.28 % and
    0.07 %; 0.43 % and 0.37 % on an AVX-512 Xeon)."""
    cfg = load_cfg(CONFIGS / "tinyssd_banana.py")["model"]
    cfg["bbox_head"]["num_classes"] = 3
    torch.manual_seed(0)
    state = build_detector(cfg).state_dict()
    batch = _batch(128, n=2)

    def curve(channels_last, dtype):
        model = build_detector(cfg)
        model.load_state_dict(state)
        model.backbone.channels_last = channels_last
        model.to(dtype).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.2, weight_decay=5e-4)
        out = []
        for _ in range(8):
            cls, reg, sizes = model(batch["images"].to(dtype))
            losses, _ = model.loss_from_outputs(batch, (cls.float(), reg.float(), sizes))
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
            out.append(float(total.detach()))
        return torch.tensor(out, dtype=torch.float64)

    exact = curve(False, torch.float64)
    assert exact[-1] < exact[0] / 4
    for channels_last in (True, False):
        err = float(((curve(channels_last, torch.float32) - exact).abs() / exact).max())
        assert err < 1e-2, (channels_last, err)


def _adamw_after_steps(settings, steps: int = 5) -> list[torch.Tensor]:
    """The parameters of one fixed model after ``steps`` optimizer steps on fixed gradients.

    The gradients are drawn away from zero (|g| in [0.5, 1.5]): Adam divides by sqrt(v), so a
    gradient near 0 turns a last-bit difference between two kernels into a step of +-lr, which
    says nothing about the optimizer. No forward pass: both optimizers see the same gradients."""
    from detengine.train.trainer import build_optimizer
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    opt = build_optimizer(model, settings)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():
            magnitude = 0.5 + torch.rand(p.shape, generator=g)
            sign = torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0)
            p.grad = magnitude * sign
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _same_updates(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    # the parameters move by ~1e-2 in 5 steps; a wrong lr (1 %) or a dropped weight decay moves
    # them by >= 1e-5; two kernels rounding differently by < 1e-9 (parameters are ~0.1-1)
    return all(torch.allclose(x, y, rtol=1e-6, atol=1e-7) for x, y in zip(a, b, strict=True))


def test_fused_adamw_gives_the_same_updates():
    """``optimizer=dict(type='AdamW', fused=True)``: torch's fused kernel, the same steps as the
    per-parameter loop given the same gradients; a real difference in the settings is caught."""
    from dataclasses import replace

    from detengine.train.runner import settings_from_config
    cfg = load_cfg(CONFIGS / "tinyssd_synthetic.py")
    fused = settings_from_config(cfg)
    assert fused.optimizer == "AdamW" and fused.fused and fused.weight_decay
    plain = replace(fused, fused=False)
    reference = _adamw_after_steps(plain)
    assert _same_updates(_adamw_after_steps(fused), reference)
    for wrong in (replace(fused, lr=fused.lr * 1.01), replace(fused, weight_decay=0.0),
                  replace(fused, optimizer_args={"betas": (0.8, 0.999)})):
        assert not _same_updates(_adamw_after_steps(wrong), reference), wrong
    sgd = dict(cfg, optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.1, "fused": True}})
    with pytest.raises(ValueError, match="AdamW only"):
        settings_from_config(sgd)


def test_synthetic_recipe_keeps_d2l_network_and_consistent_input_size():
    """tinyssd_synthetic changes the recipe only: d2l's network, anchors, assigner, coder and
    losses as tinyssd_banana; its anchors are laid out for the size its pipelines resize to."""
    d2l = load_cfg(CONFIGS / "tinyssd_banana.py")["model"]
    cfg = load_cfg(CONFIGS / "tinyssd_synthetic.py")
    ours = cfg["model"]
    assert ours["backbone"] == d2l["backbone"] and ours["type"] == d2l["type"] == "TinySSD"
    for key in ("in_channels", "bbox_coder", "loss_cls", "loss_bbox"):
        assert ours["bbox_head"][key] == d2l["bbox_head"][key]
    gen, d2l_gen = ours["bbox_head"]["anchor_generator"], d2l["bbox_head"]["anchor_generator"]
    assert (gen["sizes"], gen["ratios"]) == (d2l_gen["sizes"], d2l_gen["ratios"])
    assert ours["train_cfg"]["assigner"] == d2l["train_cfg"]["assigner"]
    for key in ("train_pipeline", "test_pipeline"):
        resize = next(t for t in cfg[key] if t["type"] == "Resize")
        assert tuple(resize["scale"]) == tuple(gen["image_size"])
    assert cfg["data"]["synthetic"]["num_val"] == 60 and cfg["data"]["synthetic"]["seed"] == 0


def test_ssd_vgg_channels_last_gives_the_same_losses():
    """SSD300's VGG16 runs NHWC where that is faster (a memory layout only: ~1.25x per training step
    on an AVX-512 CPU, ~0.7x on an AVX2 one; a GPU): the losses equal the NCHW network's with the
    same weights."""
    from detengine.models.ssd import nhwc_pays
    cfg = load_cfg(CONFIGS / "ssd300_coco.py")["model"]
    torch.manual_seed(0)
    fast, plain = build_detector(cfg), build_detector(cfg)
    plain.load_state_dict(fast.state_dict())
    assert fast.backbone.channels_last is None          # the default: whichever pays where the input is
    assert nhwc_pays(torch.zeros(1)) == torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    assert nhwc_pays(torch.zeros(1, device="meta"))
    fast.backbone.channels_last = True
    plain.backbone.channels_last = False
    batch = _batch(300, n=1)
    with torch.no_grad():
        l1, _ = fast.loss(batch)
        l2, _ = plain.loss(batch)
    for k in l2:
        torch.testing.assert_close(l1[k], l2[k], rtol=1e-4, atol=1e-4)
