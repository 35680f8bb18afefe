"""A training step under mixed precision (``--amp``): the head's outputs come in half, and the targets and
losses must still run. FCOS's, ATSS's, GFL's and TOOD's per-prior sums put float32 losses into half
buffers and stopped the step; TOOD's losses of probabilities call ``F.binary_cross_entropy``, which CUDA's
autocast refuses ("unsafe to autocast"). The CPU has no CUDA autocast: the refusal is emulated, and half
outputs are what autocast's convolutions give."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detengine.dense_losses import focal_loss_with_prob
from detengine.launches import gpu_code_paths
from detengine.losses import QualityFocalLoss
from tests.engine.test_launches import CONFIGS, _three_images, shipped_model

pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture
def bce_refused_under_autocast(monkeypatch):
    bce = F.binary_cross_entropy

    def refused(*args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("torch.nn.functional.binary_cross_entropy is unsafe to autocast")
        return bce(*args, **kwargs)
    monkeypatch.setattr(F, "binary_cross_entropy", refused)


@pytest.mark.parametrize("name", CONFIGS + ["tood_r50_fpn_coco@initial"])
@pytest.mark.parametrize("paths", ["cpu", "gpu"])
def test_a_loss_on_half_outputs_under_autocast_is_the_float32_loss(name, paths, bce_refused_under_autocast):
    """Half head outputs under autocast: the losses equal, bit for bit, the float32 losses of the same
    (half-rounded) outputs, and the gradients come back in half, finite; on the CPU's and the GPU's code
    paths (each image's targets, the batch's in one pass)."""
    model = shipped_model(name)
    data = _three_images(300 if name.startswith("ssd300") else 128, 4, seeds=(1, 2))
    with torch.no_grad():
        cls, reg, sizes = model(data["images"])
    cls, reg = cls.half(), reg.half()
    with gpu_code_paths() if paths == "gpu" else torch.autocast("cpu", enabled=False):
        want, _ = model.loss_from_outputs(data, (cls.float(), reg.float(), sizes))
        half = cls.clone().requires_grad_(), reg.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.float16):
            got, _ = model.loss_from_outputs(data, (*half, sizes))
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == torch.float32 and torch.equal(got[k], want[k]), k
    sum(got.values()).backward()
    for t in half:
        assert t.grad.dtype == torch.float16 and torch.isfinite(t.grad).all()


def test_losses_of_probabilities_run_under_autocast_in_float32(bce_refused_under_autocast):
    """TOOD's QFL and focal loss of probabilities called under autocast themselves (a caller other than
    a detector's loss): computed with autocast off, in float32, equal to the float32 loss."""
    g = torch.Generator().manual_seed(4)
    prob = torch.rand(300, 7, generator=g).half()
    labels = torch.randint(0, 8, (300,), generator=g)
    scores = torch.rand(300, generator=g)
    qfl = QualityFocalLoss(activated=True)
    want = qfl.elementwise(prob.float(), (labels, scores)), focal_loss_with_prob(prob.float(), labels)
    with torch.autocast("cpu", dtype=torch.float16):
        got = qfl.elementwise(prob, (labels, scores)), focal_loss_with_prob(prob, labels)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bench/gpu_check.sh runs it on a GPU machine)")
@pytest.mark.parametrize("name", CONFIGS + ["tood_r50_fpn_coco@initial"])
def test_a_cuda_training_step_under_autocast_is_finite(name):
    """What ``--amp`` does on CUDA, for every shipped detector: the network under ``torch.autocast``
    (half convolutions, CUDA's own refusals), the loss scaled by a GradScaler, one optimizer step: finite
    losses in float32, finite parameters after the step."""
    model = shipped_model(name).cuda()
    data = _three_images(300 if name.startswith("ssd300") else 128, 4, seeds=(1, 2))
    data = {"images": data["images"].cuda(), "gt_boxes": [b.cuda() for b in data["gt_boxes"]],
            "gt_labels": [lb.cuda() for lb in data["gt_labels"]]}
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        losses, _ = model.loss(data)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
    scaler.scale(sum(losses.values())).backward()
    scaler.step(opt)
    scaler.update()
    assert all(torch.isfinite(p).all() for p in model.parameters())
