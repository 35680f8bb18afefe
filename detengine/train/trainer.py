"""The training loop: one ``step()`` at a time, so a GUI can pause, single-step and stop it.

Order of events per iteration: fetch batch -> forward + loss -> NaN guard -> backward -> clip
-> optimiser step -> lr step -> ``iter`` event. At the end of an epoch: checkpoint (every
``checkpoint_interval`` epochs), evaluation (every ``eval_interval``), best checkpoint by AP.
Everything that decides the order of data and augmentation is seeded by (seed, epoch, index),
so a run resumed from a checkpoint produces the same next losses as an uninterrupted one.
"""
from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import distributed as dist
from .batch_augments import augment_batch
from .checkpoint import load_checkpoint, load_state_checked, rng_state, save_checkpoint, set_rng_state
from .control import POLL_S
from .data import EpochOrder
from .ema import ModelEMA
from .events import EventBus
from .optim import build_optimizer
from .schedule import LrSchedule, TableLR

__all__ = ["TrainSettings", "Trainer", "TrainingDiverged", "pick_device", "make_lr_scheduler"]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the iteration and the loss term."""


def pick_device(requested: str | None = None) -> torch.device:
    """``cuda`` when available (or asked for), else ``cpu``; asking for CUDA without it is an error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"--device {requested!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but this machine has no usable CUDA GPU; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"--device {requested}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                         f"(cuda:0{f' .. cuda:{count - 1}' if count > 1 else ''}); pick one of them or --device cuda")
    return device


@dataclass
class TrainSettings:
    """Everything the loop needs besides the model and data (mmdetection names where they exist)."""

    max_epochs: int = 12
    batch_size: int = 8
    optimizer: str = "SGD"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float | None = 5e-4  # None: the optimizer's default, and paramwise decay rules cannot apply
    schedulers: tuple = ()  # mmengine's param_scheduler dicts (see detengine.train.schedule); () = constant
    grad_clip: float | None = None
    grad_clip_norm_type: float = 2.0
    grad_clip_args: dict = field(default_factory=dict)  # error_if_nonfinite, foreach
    optimizer_args: dict = field(default_factory=dict)  # other optimizer arguments (betas, eps, nesterov, ...)
    paramwise: dict | None = None  # optim_wrapper.paramwise_cfg (see detengine.train.optim)
    ema: dict | None = None  # the EMAHook's arguments (see detengine.train.ema)
    fused: bool = False  # torch's fused AdamW kernel (optimizer config ``fused=True``)
    amp: bool = False  # mixed precision (on CUDA only): AmpOptimWrapper, or --amp
    amp_dtype: str = "float16"  # optim_wrapper.dtype
    loss_scale: object = "dynamic"  # optim_wrapper.loss_scale: "dynamic", a fixed number, or GradScaler arguments
    deterministic: bool = False  # randomness.deterministic (cuDNN)
    auto_scale_base_batch: int | None = None  # auto_scale_lr enabled: lr * (ranks * batch) / this
    checkpoint_interval: int = 1
    eval_interval: int = 1
    eval_begin: int = 1  # train_cfg.val_begin
    dynamic_intervals: tuple = ()  # train_cfg.dynamic_intervals: ((from epoch, interval), ...)
    seed: int = 0
    num_workers: int = 0
    log_interval: int = 10
    max_iters: int | None = None  # stop after this many iterations (smoke tests, benchmarks)
    probe: dict = field(default_factory=lambda: {"interval": "auto", "images": 16})  # detengine.probe
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schedulers"] = [dict(x) for x in self.schedulers]
        return d


def make_lr_scheduler(optimizer, s: TrainSettings, iters_per_epoch: int):
    """(:class:`LrSchedule`, a :class:`TableLR` on ``optimizer``) for the settings, stepped once
    per iteration. One table per group rate: mmengine's chain is not scale-free (an absolute
    ``eta_min`` is the same for a group with ``lr_mult``)."""
    schedule = LrSchedule(tuple(s.schedulers), iters_per_epoch, s.max_epochs)
    return schedule, TableLR(optimizer, schedule)


def _changed_settings(saved: dict, now: dict) -> str:
    """``name: saved -> now`` for the settings that decide the data order, the schedule and the
    update, where a resumed run differs from the run that made its checkpoint."""
    keys = ("batch_size", "max_epochs", "optimizer", "lr", "momentum", "weight_decay", "schedulers", "seed",
            "paramwise", "ema", "grad_clip")
    return ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in keys if k in saved and saved[k] != now.get(k))


class Trainer:
    """Trains ``model`` (a :class:`~detengine.models.DenseDetector`) on ``train_set``.

    ``train_set``: a map-style dataset of transformed samples with ``set_epoch(epoch)`` (seeded
    augmentation); ``collate``: samples -> batch; ``evaluate``: optional callable
    ``(model, epoch) -> CocoMetrics``; ``work_dir``: the run folder (checkpoints, log);
    ``meta``: saved in every checkpoint (the class names and category ids of the data);
    ``batch_augments``: the data preprocessor's batch augments (:mod:`detengine.train.batch_augments`),
    applied to each training batch on the device, their state saved in checkpoints.
    """

    def __init__(self, model: nn.Module, train_set, collate, *, settings: TrainSettings, work_dir, device=None,
                 events: EventBus | None = None, evaluate=None, meta: dict | None = None, batch_augments=()):
        self.model = model
        self.batch_augments = list(batch_augments)
        self.train_set, self.collate = train_set, collate
        self.s = settings
        self.work_dir = Path(work_dir)
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.events = events or EventBus()
        self.evaluate_fn = evaluate
        self.stop_event = threading.Event()
        self.control = None  # e.g. a ControlFile: ``read() -> "run" | "pause" | "stop"``, before each iteration
        self.model.to(self.device)
        self.forward_module = dist.wrap_model(self.model, self.device)
        notes: list[str] = []
        self.optimizer = build_optimizer(self.model, settings, notes)
        self.ema = ModelEMA(self.model, **settings.ema) if settings.ema else None
        self.meta = dict(meta or {})
        self.world = dist.world_size()
        self.order = EpochOrder(settings.seed, len(train_set), self.world, dist.rank())
        if hasattr(train_set, "set_order"):  # cached mosaic / mix-up look back along this order
            train_set.set_order(self.order)
        per_rank = math.ceil(len(train_set) / self.world)
        self.iters_per_epoch = max(1, math.ceil(per_rank / settings.batch_size))
        self.schedule, self.scheduler = make_lr_scheduler(self.optimizer, settings, self.iters_per_epoch)
        for note in notes:
            self.events.emit({"type": "warning", "message": note})
        self.use_amp = bool(settings.amp and self.device.type == "cuda" and settings.amp_dtype != "float32")
        self.amp_dtype = torch.bfloat16 if settings.amp_dtype == "bfloat16" else torch.float16
        # mmengine's AmpOptimWrapper keeps a GradScaler for bfloat16 too; a number: a fixed scale
        scale = settings.loss_scale
        scaler_args = dict(scale) if isinstance(scale, dict) else {} if scale == "dynamic" else {"init_scale": scale}
        self.fixed_scale = float(scale) if isinstance(scale, (int, float)) else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp, **scaler_args)
        self.epoch, self.iter_in_epoch, self.global_step = 0, 0, 0
        self.best_ap = -1.0
        self.last_metrics = None
        self._iterator = None
        self._epoch_start = None
        self._step_times: list[float] = []
        self.unreadable = 0  # images skipped because they could not be decoded (this process's samples)
        self.probe = None  # a detengine.probe.TrainingProbe, attached on rank 0 only (it runs no collective)

    # ------------------------------------------------------------------ state
    @property
    def finished(self) -> bool:
        if self.s.max_iters is not None and self.global_step >= self.s.max_iters:
            return True
        return self.epoch >= self.s.max_epochs

    def request_stop(self) -> None:
        """Ask the loop to stop; honoured before the next iteration starts."""
        self.stop_event.set()

    @property
    def eval_model(self) -> nn.Module:
        """What evaluation, export and ``model`` in checkpoints use: the averaged copy with EMA."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict:
        state = {"model": self.eval_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch, "global_step": self.global_step,
                 "best_ap": self.best_ap, "rng": rng_state(), "settings": self.s.to_dict(),
                 "model_cfg": getattr(self.model, "model_cfg", {}), "meta": self.meta, "detscope_checkpoint": 1}
        if self.ema is not None:  # as mmengine's EMAHook: ``model`` holds the averaged weights
            state["ema"] = {"steps": self.ema.steps, "source_model": self.model.state_dict()}
        if self.batch_augments:  # the current multi-scale size and its generator
            state["batch_augments"] = [a.state_dict() for a in self.batch_augments]
        return state

    def save(self, name: str) -> Path | None:
        """Atomically write ``work_dir/name`` (rank 0 only)."""
        if not dist.is_main():
            return None
        path = save_checkpoint(self.work_dir / name, self.state_dict())
        self.events.emit({"type": "checkpoint", "path": str(path), "epoch": self.epoch,
                          "iter_in_epoch": self.iter_in_epoch, "global_step": self.global_step})
        return path

    def resume(self, path) -> None:
        """Continue exactly where the checkpoint at ``path`` left off."""
        ckpt = load_checkpoint(path, map_location="cpu")  # RNG states must stay CPU tensors
        ema_state = ckpt.get("ema")
        load_state_checked(self.model, ema_state["source_model"] if ema_state else ckpt["model"], path)
        if self.ema is not None:
            if ema_state:
                load_state_checked(self.ema.module, ckpt["model"], path)
                self.ema.steps = int(ema_state["steps"])
            else:  # a checkpoint from a run without EMA: start averaging from its weights
                self.ema.reset_from(self.model)
                self.events.emit({"type": "warning", "message": f"{path} has no EMA weights; the EMA starts "
                                                                f"from its model weights"})
        self.optimizer.load_state_dict(ckpt["optimizer"])  # moves its state to the parameters' device
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):  # empty for CPU / non-AMP runs
            self.scaler.load_state_dict(ckpt["scaler"])
        changed = _changed_settings(ckpt.get("settings") or {}, self.s.to_dict())
        if changed:
            self.events.emit({"type": "warning", "message": f"resuming {path} with other settings than it was "
                                                            f"trained with ({changed}): the run will not continue "
                                                            f"exactly as the original would have"})
        self.epoch, self.iter_in_epoch = int(ckpt["epoch"]), int(ckpt["iter_in_epoch"])
        self.global_step, self.best_ap = int(ckpt["global_step"]), float(ckpt["best_ap"])
        set_rng_state(ckpt["rng"])
        for augment, saved in zip(self.batch_augments, ckpt.get("batch_augments") or []):
            augment.load_state_dict(saved)
        self._iterator = None

    # ------------------------------------------------------------------ data
    def _epoch_indices(self, epoch: int) -> list[int]:
        return self.order(epoch)

    def _start_epoch_iterator(self):
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        core = getattr(self.model, "core", None)
        if hasattr(core, "set_epoch"):          # TOOD: ATSS assignment for its first initial_epoch epochs
            core.set_epoch(self.epoch)
        indices = self._epoch_indices(self.epoch)[self.iter_in_epoch * self.s.batch_size:]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.train_set, indices), batch_size=self.s.batch_size, shuffle=False,
            num_workers=self.s.num_workers, collate_fn=self.collate, drop_last=False,
            persistent_workers=False)
        self._iterator = iter(loader)
        self._epoch_start = time.perf_counter()

    def _to_device(self, batch: dict) -> dict:
        d = self.device
        out = dict(batch)
        out["images"] = batch["images"].to(d, non_blocking=True)
        for key in ("gt_boxes", "gt_labels", "gt_boxes_ignore"):
            if key in batch:
                out[key] = [t.to(d) for t in batch[key]]
        return out

    # ------------------------------------------------------------------ loop
    def step(self) -> dict | None:
        """One training iteration. Returns its ``iter`` event, or None when the run is over or
        a stop was requested (the caller then saves); raises :class:`TrainingDiverged`."""
        if self.finished:
            return None
        stop, pause = self._control_flags()
        if pause and not stop:
            self.events.emit({"type": "paused", "message": "paused", "global_step": self.global_step})
            while pause and not stop:
                time.sleep(POLL_S)
                stop, pause = self._control_flags()
            if not stop:
                self.events.emit({"type": "resumed", "message": "resumed"})
        if stop:
            self.stop_event.set()
            return None
        if self._iterator is None:
            self._start_epoch_iterator()
        if self.probe is not None:  # after set_epoch (TOOD's stage), before the step's clock starts
            self._probe()
        t0 = time.perf_counter()
        batch = next(self._iterator)
        self._note_unreadable(batch)
        batch = augment_batch(self.batch_augments, self._to_device(batch), self.global_step)
        self.model.train()
        self.model.want_assign_stats = self.global_step % max(self.s.log_interval, 1) == 0
        self.model.assign_stats = None
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            outputs = self.forward_module(batch["images"])
            losses, _ = self.model.loss_from_outputs(batch, outputs, across_ranks=self.world > 1)
        logged = self._logged_losses(losses)
        self._check_finite(logged)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        grad_norm = self._clip()
        lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step used
        self.scaler.step(self.optimizer)
        self.scaler.update(self.fixed_scale)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, self.global_step, self.epoch)
        event = self._iter_event(logged, grad_norm, lr, len(batch["images"]), time.perf_counter() - t0,
                                 self.model.assign_stats)
        self._advance()
        return event

    def _probe(self, final: bool = False) -> None:
        """The per-GT probe (:mod:`detengine.probe`) of the weights after ``global_step``
        iterations, when due (``final``: the end of the run); its cost as a ``probe`` event."""
        done = self.probe.maybe_run(self.model, self.global_step, self.epoch, final=final)
        if done:
            self.events.emit({"type": "probe", "epoch": self.epoch, **done})

    def _note_unreadable(self, batch: dict) -> None:
        """A warning event for each image the data set could not decode in this batch (the
        sample was skipped: another took its place), with the count so far (``unreadable``)."""
        for meta in batch.get("metas") or ():
            for message in meta.pop("unreadable", None) or ():
                self.unreadable += 1
                self.events.emit({"type": "warning", "kind": "unreadable_image", "unreadable": self.unreadable,
                                  "message": f"{message}: skipped (another sample took its place); "
                                             f"{self.unreadable} unreadable image(s) skipped so far",
                                  "epoch": self.epoch, "global_step": self.global_step})

    def _control_flags(self) -> tuple[bool, bool]:
        """(stop, pause) now: a stop request or signal, the control word. Under torchrun the
        ranks agree (any rank's request counts for all) and act only on what they agreed, so
        they stop or pause at the same iteration and none waits alone in a collective; while
        paused they keep agreeing every ``POLL_S`` seconds, far inside any collective timeout."""
        word = self.control.read() if self.control is not None else "run"
        stop, pause = self.stop_event.is_set() or word == "stop", word == "pause"
        if self.world > 1:
            stop, pause = dist.any_rank(stop, pause)
        return stop, pause

    def _logged_losses(self, losses: dict) -> dict[str, float]:
        """The loss terms as floats, averaged over the ranks under torchrun: one small all-reduce
        per step, so a NaN on any rank stops every rank at the same step (instead of the others
        waiting for it in the gradient all-reduce until the process group times out)."""
        values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        values = dist.reduce_mean(values).cpu().tolist()
        return dict(zip(losses, values))

    def _check_finite(self, losses: dict[str, float]) -> None:
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            where = " (averaged over the ranks)" if self.world > 1 else ""
            values = ", ".join(f"{k}={losses[k]}" for k in bad) + where
            last = self.work_dir / "last.pth"
            hint = f"; the last good checkpoint is {last}" if last.exists() else ""
            message = (f"loss became NaN or infinite at epoch {self.epoch + 1}, iteration {self.iter_in_epoch + 1} "
                       f"(global step {self.global_step + 1}): {values}. Lower the learning rate, add warm-up or "
                       f"gradient clipping{hint}")
            self.events.emit({"type": "error", "kind": "nan_loss", "message": message, "terms": bad,
                              "epoch": self.epoch, "iter": self.iter_in_epoch, "global_step": self.global_step,
                              "checkpoint": str(last) if last.exists() else None})
            raise TrainingDiverged(message)

    def _clip(self) -> float | None:
        """Clip (when configured) and return the gradient norm; without a loss scaler a
        non-finite norm stops the run before the weights are touched (with one, the scaler
        skips that step, as mmengine's AmpOptimWrapper)."""
        scaling = self.scaler.is_enabled()
        if not self.s.grad_clip and scaling:
            return None
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.s.grad_clip or float("inf"),
                                                    norm_type=self.s.grad_clip_norm_type, **self.s.grad_clip_args))
        if not scaling and not math.isfinite(norm):
            self._check_finite({"gradient_norm": norm})
        return norm

    def _iter_event(self, losses: dict[str, float], grad_norm, lr: float, batch_images, seconds,
                    assign: dict | None = None) -> dict:
        """The ``iter`` event; ``assign``: this batch's assignment statistics (every
        ``log_interval`` steps, :mod:`detengine.assign_stats`; this rank's batch)."""
        self._step_times = (self._step_times + [seconds])[-20:]
        mean_t = sum(self._step_times) / len(self._step_times)
        remaining = (self.s.max_epochs - self.epoch) * self.iters_per_epoch - self.iter_in_epoch - 1
        if self.s.max_iters is not None:
            remaining = min(remaining, self.s.max_iters - self.global_step - 1)
        return self.events.emit({
            "type": "iter", "epoch": self.epoch, "iter": self.iter_in_epoch, "global_step": self.global_step,
            "iters_per_epoch": self.iters_per_epoch, "max_epochs": self.s.max_epochs,
            "losses": losses, "loss": sum(losses.values()),
            "lr": lr, "grad_norm": grad_norm,
            "images_per_s": batch_images * self.world / max(seconds, 1e-9), "eta_s": max(remaining, 0) * mean_t,
            "last_in_epoch": self.iter_in_epoch + 1 == self.iters_per_epoch,
            **({"assign": assign} if assign else {})})

    def _advance(self) -> None:
        self.global_step += 1
        self.iter_in_epoch += 1
        if self.iter_in_epoch >= self.iters_per_epoch:
            self._end_epoch()

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.iter_in_epoch = 0
        self._iterator = None
        if self.evaluate_fn is not None and self._evaluate_now():
            self.run_evaluation()  # first, so last.pth records the updated best AP
        if self.epoch % max(self.s.checkpoint_interval, 1) == 0 or self.epoch >= self.s.max_epochs:
            self.save("last.pth")

    def _evaluate_now(self) -> bool:
        """mmengine's ``EpochBasedTrainLoop`` rule after ``self.epoch`` finished epochs: from
        ``val_begin`` on, every ``val_interval`` (switched by ``dynamic_intervals``), and the last."""
        milestones = [0] + [e for e, _ in self.s.dynamic_intervals]
        intervals = [self.s.eval_interval] + [i for _, i in self.s.dynamic_intervals]
        interval = max(intervals[bisect.bisect(milestones, self.epoch + 1) - 1], 1)  # mmengine: epoch + 1
        return self.epoch >= self.s.eval_begin and (self.epoch % interval == 0 or self.epoch >= self.s.max_epochs)

    def run_evaluation(self):
        """Evaluate (all ranks take part), emit the metrics, keep the best checkpoint."""
        model = self.eval_model
        dist.broadcast_buffers(model)  # every rank evaluates the weights rank 0 saves
        model.eval()
        metrics = self.evaluate_fn(model, self.epoch)
        self.last_metrics = metrics
        if metrics is not None and dist.is_main():
            self.events.emit({"type": "eval", "epoch": self.epoch - 1, "metrics": metrics.stats,
                              "per_class_ap": {str(k): v for k, v in metrics.per_class_ap.items()}})
            if metrics.stats["AP"] > self.best_ap:
                self.best_ap = metrics.stats["AP"]
                self.save("best.pth")
        return metrics

    def run(self) -> dict:
        """Train until done or stopped; returns a summary. A stop saves ``last.pth`` at once."""
        self.events.emit({"type": "start", "message": f"training on {self.device} ({self.world} process(es)), "
                                                      f"{self.iters_per_epoch} iterations per epoch",
                          "device": str(self.device), "settings": self.s.to_dict(), "work_dir": str(self.work_dir)})
        t0 = time.perf_counter()
        try:
            while self.step() is not None:
                pass
        except BaseException as exc:
            self._save_on_error(exc)
            raise
        stopped = self.stop_event.is_set() and not self.finished
        if self.probe is not None and self.finished:
            self._probe(final=True)
        if stopped:
            path = self.save("last.pth")
            self.events.emit({"type": "stop", "message": f"stopped at epoch {self.epoch + 1}, iteration "
                                                         f"{self.iter_in_epoch + 1}; saved {path}"})
        elif self.s.max_iters is not None and self.global_step >= self.s.max_iters and self.iter_in_epoch:
            self.save("last.pth")
        summary = {"epochs": self.epoch, "global_step": self.global_step, "seconds": time.perf_counter() - t0,
                   "stopped": stopped, "best_ap": self.best_ap, "unreadable": self.unreadable,
                   "metrics": None if self.last_metrics is None else self.last_metrics.stats}
        skipped = f"; {self.unreadable} unreadable image(s) skipped" if self.unreadable else ""
        self.events.emit({"type": "end", "message": f"done: {self.global_step} iterations in "
                                                    f"{summary['seconds']:.1f} s{skipped}", **summary})
        return summary

    def _save_on_error(self, exc: BaseException) -> None:
        """A run that fails after at least one step still leaves ``last.pth`` (its state when the
        error came), said in the log. A diverged run keeps its last good checkpoint instead."""
        if isinstance(exc, TrainingDiverged) or self.global_step == 0 or not dist.is_main():
            return
        try:
            path = self.save("last.pth")
        except Exception as save_exc:  # the original error is what the caller must see
            self.events.emit({"type": "error", "kind": "save_failed",
                              "message": f"training failed ({type(exc).__name__}: {exc}) and saving last.pth "
                                         f"failed too: {save_exc}"})
            return
        self.events.emit({"type": "error", "kind": "exception", "checkpoint": str(path),
                          "message": f"training failed at epoch {self.epoch + 1}, iteration {self.iter_in_epoch + 1} "
                                     f"(global step {self.global_step}): {type(exc).__name__}: {exc}; "
                                     f"saved {path} (resume from it with --resume)"})
