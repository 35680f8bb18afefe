"""The engine's facade: what the GUI and scripts import. Everything here is Qt-free.

    from detengine.api import inspect
    trace = inspect((300, 300), [[10, 20, 120, 200]], [0], "ssd300_coco")
    print(trace.summary())
"""
from __future__ import annotations

from pathlib import Path

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
           "resolve_config", "backbone_init_checkpoint"]


def inspect(image_shape, gt_boxes, gt_labels, config, predictions=None, **kwargs) -> DebugTrace:
    """:func:`detengine.trace.inspect`, also accepting a shipped config name (``"ssd300_coco"``)."""
    if isinstance(config, str) and not Path(config).exists():
        config = str(resolve_config(config))
    return _inspect(image_shape, gt_boxes, gt_labels, config, predictions, **kwargs)
