"""Model weight averaging as mmengine's ``EMAHook`` (``custom_hooks=[dict(type='EMAHook', ...)]``).

The averaged copy is updated after every optimiser step with mmengine's rules
(``BaseAveragedModel.update_parameters``): the first update copies the model; later ones
average every floating-point entry (parameters, plus buffers when ``update_buffers``) every
``interval`` steps and leave integer entries (``num_batches_tracked``) at their first value;
without ``update_buffers`` the buffers are copied. Before ``begin_iter`` / ``begin_epoch`` the
copy just follows the model. Evaluation and the saved ``model`` weights use the averaged copy
(mmengine swaps them in the same way), the training weights ride along for resuming.

torch's ``swa_utils.AveragedModel`` differs in those integer-buffer and interval details and
has no annealed momentum, hence this small class.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["EMA_TYPES", "ModelEMA"]

EMA_TYPES = ("ExponentialMovingAverage", "MomentumAnnealingEMA", "ExpMomentumEMA")


class ModelEMA:
    """An averaged copy of ``model``. ``ema_type`` and its arguments as in mmengine / mmdetection:

    - ``ExponentialMovingAverage(momentum=0.0002)``: ``avg.lerp_(src, momentum)``
    - ``MomentumAnnealingEMA(momentum=0.0002, gamma=100)``: momentum
      ``max(momentum, gamma / (gamma + steps))``, ``lerp_``
    - ``ExpMomentumEMA(momentum=0.0002, gamma=2000)`` (mmdetection, RTMDet): momentum
      ``(1 - momentum) * exp(-(1 + steps) / gamma) + momentum``, ``avg * (1 - m) + src * m``
    """

    def __init__(self, model: nn.Module, *, ema_type: str = "ExponentialMovingAverage", momentum: float = 0.0002,
                 gamma: float | None = None, interval: int = 1, update_buffers: bool = False, begin_iter: int = 0,
                 begin_epoch: int = 0, strict_load: bool = False, priority=None):
        if ema_type not in EMA_TYPES:
            raise ValueError(f"EMAHook ema_type must be one of {list(EMA_TYPES)}, got {ema_type!r}")
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"EMAHook momentum must be in (0, 1), got {momentum}")
        if begin_iter and begin_epoch:
            raise ValueError("EMAHook: set begin_iter or begin_epoch, not both")
        if interval < 1:
            raise ValueError(f"EMAHook interval must be >= 1, got {interval}")
        self.ema_type, self.momentum, self.interval = ema_type, float(momentum), int(interval)
        self.gamma = float(gamma if gamma is not None else {"MomentumAnnealingEMA": 100}.get(ema_type, 2000))
        if self.gamma <= 0:
            raise ValueError(f"EMAHook gamma must be > 0, got {gamma}")
        self.update_buffers = bool(update_buffers)
        self.begin_iter, self.begin_epoch = int(begin_iter), int(begin_epoch)
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.steps = 0

    def _tracked(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return module.state_dict() if self.update_buffers else dict(module.named_parameters())

    def started(self, global_step: int, epoch: int) -> bool:
        """mmengine's ``_ema_started`` for the iteration just finished (0-based counters)."""
        if self.begin_epoch > 0:
            return epoch + 1 >= self.begin_epoch
        return global_step + 1 >= self.begin_iter

    @torch.no_grad()
    def update(self, model: nn.Module, global_step: int = 0, epoch: int = 0) -> None:
        """After an optimiser step: average ``model`` in (or follow it before the start)."""
        if not self.started(global_step, epoch):
            src = model.state_dict()
            for k, p in self.module.state_dict().items():
                p.copy_(src[k])
            return
        src = self._tracked(model)
        avg = self._tracked(self.module)
        if self.steps == 0:
            for k, p in avg.items():
                p.copy_(src[k])
        elif self.steps % self.interval == 0:
            m = self._rate()
            for k, p in avg.items():
                if p.dtype.is_floating_point:
                    s = src[k].to(p.device)
                    if self.ema_type == "ExpMomentumEMA":
                        p.mul_(1 - m).add_(s, alpha=m)
                    else:
                        p.lerp_(s, m)
        if not self.update_buffers:
            for b_avg, b_src in zip(self.module.buffers(), model.buffers()):
                b_avg.copy_(b_src.to(b_avg.device))
        self.steps += 1

    def _rate(self) -> float:
        if self.ema_type == "ExpMomentumEMA":
            return (1 - self.momentum) * math.exp(-float(1 + self.steps) / self.gamma) + self.momentum
        if self.ema_type == "MomentumAnnealingEMA":
            return max(self.momentum, self.gamma / (self.gamma + self.steps))
        return self.momentum

    def reset_from(self, model: nn.Module) -> None:
        """Start over as a copy of ``model`` (a checkpoint without an averaged copy)."""
        self.module.load_state_dict(model.state_dict())
        self.steps = 0
