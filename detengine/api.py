"""The engine's facade: what the GUI and scripts import. Everything here is Qt-free.

    from detengine.api import inspect
    trace = inspect((300, 300), [[10, 20, 120, 200]], [0], "ssd300_coco")
    print(trace.summary())
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .assigners import REASON_TEXT, AssignResult, Reason
from .builder import build_head_core, default_input_shape
from .cli import resolve_config
from .config import Config, ConfigError, load_config, merge_dicts
from .postprocess import STAGE_TEXT, PostprocessResult, Stage
from .pretrained import backbone_init_checkpoint
from .priors import Priors
from .shipped import shipped_configs
from .trace import DebugTrace, head_core_for, model_config, random_predictions
from .trace import inspect as _inspect

__all__ = ["inspect", "DebugTrace", "Priors", "AssignResult", "Reason", "REASON_TEXT", "Stage", "STAGE_TEXT",
           "PostprocessResult", "Config", "ConfigError", "load_config", "merge_dicts", "model_config",
           "head_core_for", "build_head_core", "random_predictions", "default_input_shape", "shipped_configs",
           "resolve_config", "backbone_init_checkpoint", "LoadedModel", "load_model"]


@dataclass(frozen=True)
class LoadedModel:
    """A detector ready to trace: ``model``, a ``name`` for the window (``random init (seed 0)``,
    ``checkpoint best.pth``) and the ``num_classes`` its head predicts."""

    model: torch.nn.Module
    name: str
    num_classes: int


def load_model(cfg: dict, num_classes: int, checkpoint: str | None = None, *, seed: int = 0) -> LoadedModel:
    """The detector of config ``cfg`` (a full config dict): from ``checkpoint`` (DetScope's or
    mmdetection's; its class count from the checkpoint's classes), else a seeded random
    initialisation with ``num_classes`` classes."""
    from .image_trace import num_classes_override
    from .models.builder import build_detector
    if checkpoint:
        from .project_eval import checkpoint_class_names
        from .train.checkpoint import load_checkpoint, load_state_checked
        ckpt = load_checkpoint(checkpoint)
        names = checkpoint_class_names(checkpoint)  # an mmdetection checkpoint: its dataset's classes
        model_cfg = ckpt.get("model_cfg") or merge_dicts(cfg["model"], num_classes_override(len(names) if names
                                                                                             else num_classes))
        model = build_detector(model_cfg)
        load_state_checked(model, ckpt.get("model", ckpt.get("state_dict", ckpt)), checkpoint)
        return LoadedModel(model, f"checkpoint {Path(checkpoint).name}", int(model_cfg["bbox_head"]["num_classes"]))
    torch.manual_seed(seed)
    model = build_detector(merge_dicts(cfg["model"], num_classes_override(num_classes)))
    return LoadedModel(model, f"random init (seed {seed})", num_classes)


def inspect(image_shape, gt_boxes, gt_labels, config, predictions=None, **kwargs) -> DebugTrace:
    """:func:`detengine.trace.inspect`, also accepting a shipped config name (``"ssd300_coco"``)."""
    if isinstance(config, str) and not Path(config).exists():
        config = str(resolve_config(config))
    return _inspect(image_shape, gt_boxes, gt_labels, config, predictions, **kwargs)
