"""Learning-rate schedules as one multiplier per iteration: linear warm-up, then step or cosine."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LrSchedule"]


@dataclass(frozen=True)
class LrSchedule:
    """``factor(step)`` multiplies the base learning rate.

    Warm-up: linear from ``warmup_ratio`` to 1 over ``warmup_iters`` (mmdetection's ``LinearLR``
    with ``start_factor``). Then ``"step"``: times ``gamma`` at each epoch in ``milestones``;
    ``"cosine"``: 1 until ``cosine_begin``, then from 1 down to ``min_lr_ratio`` until
    ``cosine_end`` (default: the end of training), then ``min_lr_ratio`` (mmengine's
    ``CosineAnnealingLR`` with ``begin`` / ``end``, epochs when ``cosine_by_epoch`` else
    iterations, ``T_max = end - begin``); ``"constant"``.
    """

    kind: str
    iters_per_epoch: int
    max_epochs: int
    warmup_iters: int = 0
    warmup_ratio: float = 0.001
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    cosine_begin: int = 0
    cosine_end: int | None = None
    cosine_by_epoch: bool = True

    def __post_init__(self):
        if self.kind not in ("step", "cosine", "constant"):
            raise ValueError(f"schedule must be 'step', 'cosine' or 'constant', got {self.kind!r}")

    def factor(self, step: int) -> float:
        main = self._main(step)
        if step < self.warmup_iters:
            return main * (self.warmup_ratio + (1 - self.warmup_ratio) * step / self.warmup_iters)
        return main

    def _main(self, step: int) -> float:
        if self.kind == "step":
            epoch = step // max(self.iters_per_epoch, 1)
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.kind == "cosine":
            unit = self.iters_per_epoch if self.cosine_by_epoch else 1
            end = self.cosine_end if self.cosine_end is not None else self.max_epochs * self.iters_per_epoch // unit
            begin = self.cosine_begin * unit
            if step < begin:
                return 1.0
            t = min((step - begin) / max(end * unit - begin, 1), 1.0)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0
