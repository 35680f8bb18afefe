"""Learning rates as mmengine's parameter schedulers give them, one value per iteration.

mmengine chains its schedulers: each one, when stepped inside its ``[begin, end)``, rewrites the
current rate of every parameter group from the rate it finds there (``LinearLR`` multiplies by
the ratio of consecutive warm-up factors, ``CosineAnnealingLR`` rescales the distance to
``eta_min``, ``MultiStepLR`` multiplies by ``gamma`` at a milestone). Overlapping schedulers
(a warm-up inside a cosine) therefore do not simply multiply. :class:`LrSchedule` replays that
chain in plain Python floats, with mmengine's formulas, for the whole run (``ParamSchedulerHook``
order: iteration-based schedulers after every iteration, epoch-based ones after every epoch;
``convert_to_iter_based`` turns epoch counts into iterations; a missing ``end`` is the end of
training, as mmengine's runner sets it), and the trainer's :class:`TableLR` reads the table.

mmdetection's ``QuadraticWarmupLR`` (YOLOX's warm-up; configs name it ``mmdet.QuadraticWarmupLR``)
is among them: with ``T = end - begin`` (iterations after ``convert_to_iter_based``) its first step
sets ``base_lr / T^2`` whatever rate it finds, every later step ``k`` adds ``base_lr (2k + 1) / T^2``
to it, so a lone warm-up reaches ``base_lr (k + 1)^2 / T^2`` and the full rate at ``end - 1``.
"""
from __future__ import annotations

import array
import math
from dataclasses import dataclass, field

import torch

__all__ = ["LrSchedule", "TableLR", "SCHEDULERS", "scheduler_kind"]

SCHEDULERS = ("LinearLR", "MultiStepLR", "CosineAnnealingLR", "ConstantLR", "QuadraticWarmupLR")


def scheduler_kind(kind) -> str:
    """A ``param_scheduler`` type without its registry scope (``mmdet.QuadraticWarmupLR``, as
    YOLOX's configs write it, is ``QuadraticWarmupLR``; mmengine finds both under mmdetection's
    default scope)."""
    kind = str(kind)
    for scope in ("mmdet.", "mmengine."):
        if kind.startswith(scope):
            return kind[len(scope):]
    return kind


class _Chained:
    """One mmengine scheduler, stepped as ``_ParamScheduler.step`` steps it."""

    def __init__(self, cfg: dict, ipe: int, max_epochs: int, base: float):
        cfg = dict(cfg)
        self.kind = scheduler_kind(cfg.pop("type"))
        by_epoch = bool(cfg.get("by_epoch", True))
        convert = by_epoch and bool(cfg.get("convert_to_iter_based", False))
        scale = ipe if convert else 1
        self.by_epoch = by_epoch and not convert
        default_end = max_epochs if by_epoch else max_epochs * ipe
        self.begin = int(cfg.get("begin", 0) * scale)
        self.end = int((cfg["end"] if cfg.get("end") is not None else default_end) * scale)
        self.base = base
        if self.kind == "LinearLR":
            self.start, self.stop = cfg.get("start_factor", 1.0 / 3), cfg.get("end_factor", 1.0)
            self.total = self.end - self.begin - 1
        elif self.kind == "ConstantLR":
            self.factor, self.total = cfg.get("factor", 1.0 / 3), self.end - self.begin - 1
        elif self.kind == "MultiStepLR":
            self.milestones = [m * scale for m in cfg.get("milestones", ())]
            self.gamma = cfg.get("gamma", 0.1)
        elif self.kind == "CosineAnnealingLR":
            t_max = cfg.get("T_max")
            self.t_max = t_max * scale if t_max else self.end - self.begin  # mmengine: T_max or (end - begin)
            ratio = cfg.get("eta_min_ratio")
            self.eta_min = base * ratio if ratio is not None else (cfg.get("eta_min") or 0.0)
        elif self.kind == "QuadraticWarmupLR":
            self.total = self.end - self.begin          # mmdetection's total_iters
        else:
            raise ValueError(f"param_scheduler type {self.kind!r} is not supported; use one of {list(SCHEDULERS)}")
        self.global_step, self.last_step = -1, -1

    def step(self, lr: float) -> float:
        self.global_step += 1
        if self.begin <= self.global_step < self.end:
            self.last_step += 1
            lr = self._value(lr)
        return lr

    def _value(self, lr: float) -> float:
        k = self.last_step
        if self.kind == "LinearLR":
            if k == 0:
                return lr * self.start
            return lr * (1.0 + (self.stop - self.start) / (self.total * self.start + (k - 1) * (self.stop - self.start)))
        if self.kind == "ConstantLR":
            if k == 0:
                return lr * self.factor
            return lr * (1.0 / self.factor) if k == self.total else lr
        if self.kind == "MultiStepLR":
            return lr * self.gamma ** self.milestones.count(k)
        if self.kind == "QuadraticWarmupLR":
            if k == 0:
                return self.base * (2 * k + 1) / self.total ** 2
            return lr + self.base * (2 * k + 1) / self.total ** 2
        t, eta = self.t_max, self.eta_min
        if k == 0:
            return lr
        if (k - 1 - t) % (2 * t) == 0:
            return lr + (self.base - eta) * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * k / t)) / (1 + math.cos(math.pi * (k - 1) / t)) * (lr - eta) + eta


@dataclass(frozen=True)
class LrSchedule:
    """mmengine's ``param_scheduler`` list (validated config dicts) over ``max_epochs`` epochs of
    ``iters_per_epoch`` iterations. ``rates(base_lr)``: the rate of every iteration for a group
    whose own rate is ``base_lr``; ``factor(step, base_lr)``: one of them over ``base_lr``."""

    schedulers: tuple = ()
    iters_per_epoch: int = 1
    max_epochs: int = 1
    _tables: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def rates(self, base_lr: float) -> array.array:
        """The rate at every iteration ``0 .. iters_per_epoch * max_epochs`` (one past the last)."""
        table = self._tables.get(base_lr)
        if table is None:
            ipe = max(int(self.iters_per_epoch), 1)
            chain = [_Chained(cfg, ipe, self.max_epochs, base_lr) for cfg in self.schedulers]
            lr = base_lr
            for sch in chain:  # mmengine steps each scheduler once when it is built
                lr = sch.step(lr)
            table = array.array("d")  # 8 bytes a step: 2.4 MB for 300 epochs of 1000 iterations
            for step in range(ipe * self.max_epochs):
                table.append(lr)
                lr = _step_all(chain, lr, by_epoch=False)
                if (step + 1) % ipe == 0:
                    lr = _step_all(chain, lr, by_epoch=True)
            table.append(lr)
            self._tables[base_lr] = table
        return table

    def rate(self, step: int, base_lr: float) -> float:
        """The rate of iteration ``step`` (the last one's after the end)."""
        table = self.rates(base_lr)
        return table[min(int(step), len(table) - 1)]

    def factor(self, step: int, base_lr: float = 1.0) -> float:
        return self.rate(step, base_lr) / base_lr if base_lr else 0.0


def _step_all(chain: list[_Chained], lr: float, by_epoch: bool) -> float:
    for sch in chain:
        if sch.by_epoch == by_epoch:
            lr = sch.step(lr)
    return lr


class TableLR(torch.optim.lr_scheduler.LRScheduler):
    """Sets each parameter group's rate to :meth:`LrSchedule.rates` of its own initial rate at
    every step (absolute rates: a group at lr 0 and an absolute ``eta_min`` behave as in
    mmengine, where no multiplier could). Its state is the step count only."""

    def __init__(self, optimizer, schedule: LrSchedule, last_epoch: int = -1):
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [self.schedule.rate(self.last_epoch, base) for base in self.base_lrs]

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedule")}
