"""Optimiser construction with mmengine's ``paramwise_cfg`` rules.

mmengine's ``DefaultOptimWrapperConstructor`` walks the modules depth-first and gives each
parameter its own group: ``custom_keys`` first (longest key wins, then alphabetical; sets
``lr = base_lr * lr_mult`` and ``weight_decay = base_wd * decay_mult``), else
``bias_lr_mult`` on biases outside norm layers, and one weight-decay rule, the first that
applies of: norm layer (``norm_decay_mult``), bias (``bias_decay_mult``), depth-wise conv
(``dwconv_decay_mult``), 1-D parameter (``flat_decay_mult``). Parameters with
``requires_grad=False`` are left out; a parameter reached twice (shared convs, as RTMDet's
``share_conv``) is taken once, as with ``bypass_duplicate=True``.

Here parameters with identical options share one group (same update, fewer groups for the
fused kernels); groups keep the order in which mmengine would first meet them.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["PARAMWISE_KEYS", "param_groups", "build_optimizer"]

PARAMWISE_KEYS = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
                  "flat_decay_mult", "bypass_duplicate", "dcn_offset_lr_mult")
_NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def _options(module: nn.Module, name: str, param: torch.Tensor, full_name: str, cfg: dict, sorted_keys: list[str],
             base_lr: float, base_wd: float | None) -> dict:
    """The group options (besides ``params``) mmengine gives ``param``."""
    for key in sorted_keys:
        if key in full_name:
            custom = cfg["custom_keys"][key]
            opts = {"lr": base_lr * custom.get("lr_mult", 1.0)}
            if base_wd is not None:
                opts["weight_decay"] = base_wd * custom.get("decay_mult", 1.0)
            opts.update({k: v for k, v in custom.items() if k not in ("lr_mult", "decay_mult")})
            return opts
    opts: dict = {}
    is_norm = isinstance(module, _NORMS)
    is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
    if name == "bias" and not is_norm and cfg.get("bias_lr_mult") is not None:
        opts["lr"] = base_lr * cfg["bias_lr_mult"]
    if base_wd is not None:
        if is_norm and cfg.get("norm_decay_mult") is not None:
            opts["weight_decay"] = base_wd * cfg["norm_decay_mult"]
        elif name == "bias" and cfg.get("bias_decay_mult") is not None:
            opts["weight_decay"] = base_wd * cfg["bias_decay_mult"]
        elif is_dwconv and cfg.get("dwconv_decay_mult") is not None:
            opts["weight_decay"] = base_wd * cfg["dwconv_decay_mult"]
        elif param.ndim == 1 and cfg.get("flat_decay_mult") is not None:
            opts["weight_decay"] = base_wd * cfg["flat_decay_mult"]
    return opts


def param_groups(model: nn.Module, paramwise_cfg: dict | None, base_lr: float,
                 base_wd: float | None) -> list[dict]:
    """Optimizer parameter groups for ``model`` under ``paramwise_cfg`` (see the module doc).

    Unknown keys raise ``ValueError`` naming them; ``dcn_offset_lr_mult`` is accepted and has
    nothing to act on (no deformable convs here)."""
    cfg = dict(paramwise_cfg or {})
    unknown = sorted(set(cfg) - set(PARAMWISE_KEYS))
    if unknown:
        raise ValueError(f"optim_wrapper.paramwise_cfg has unknown keys {unknown}; known: {list(PARAMWISE_KEYS)}")
    custom = cfg.get("custom_keys") or {}
    sorted_keys = sorted(sorted(custom), key=len, reverse=True)
    seen: set[int] = set()
    groups: dict[tuple, dict] = {}

    def visit(module: nn.Module, prefix: str) -> None:
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            full_name = f"{prefix}.{name}" if prefix else name
            opts = _options(module, name, param, full_name, cfg, sorted_keys, base_lr, base_wd)
            key = tuple(sorted(opts.items()))
            groups.setdefault(key, {"params": [], **opts})["params"].append(param)
        for child_name, child in module.named_children():
            visit(child, f"{prefix}.{child_name}" if prefix else child_name)

    visit(model, "")
    return list(groups.values())


def build_optimizer(model: nn.Module, s) -> torch.optim.Optimizer:
    """SGD or AdamW over :func:`param_groups` (``s``: a :class:`~detengine.train.TrainSettings`)."""
    groups = param_groups(model, s.paramwise, s.lr, s.weight_decay)
    if s.optimizer == "SGD":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "AdamW":
        # fused: one kernel for all parameters; the same update to float rounding, and on a
        # 2-core CPU 5-20x faster than the per-parameter loop (TinySSD: ~1 ms instead of 4-24 ms)
        extra = {"fused": True} if s.fused else {}
        return torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay, **extra)
    raise ValueError(f"optimizer must be 'SGD' or 'AdamW', got {s.optimizer!r}")
