"""The engine's facade: everything the window (``app/``) and scripts take from the engine.

    from detengine.api import inspect
    trace = inspect((300, 300), [[10, 20, 120, 200]], [0], "ssd300_coco")
    print(trace.summary())

``app/`` imports the engine through this module only (``tests/test_structure.py`` checks it).
Names load on first use (PEP 562), so ``from detengine.api import resolve_config`` costs no
PyTorch import: the window paints before torch is loaded. The annotation document model
(``AnnotationProject``, ``Box``, ``Category``: plain, Qt-free data the window edits) belongs to the
facade too. Everything here is Qt-free.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# name -> engine module (relative to detengine) that defines it
_LAZY = {
    # configs
    "Config": "config", "ConfigError": "config", "load_config": "config", "merge_dicts": "config",
    "shipped_configs": "shipped", "find_config": "shipped", "ConfigNotFound": "shipped", "resolve_config": "cli",
    "REGISTRY": "builder", "build_head_core": "builder", "default_input_shape": "builder",
    # one image through a head: priors, assignment, loss, post-processing
    "DebugTrace": "trace", "head_core_for": "trace", "model_config": "trace", "random_predictions": "trace",
    "Priors": "priors", "AssignResult": "assigners", "Reason": "assigners", "REASON_TEXT": "assigners",
    "rule_regions": "assign_geometry", "rule_numbers": "assign_geometry", "RuleRegion": "assign_geometry",
    "Stage": "postprocess", "STAGE_TEXT": "postprocess", "PostprocessResult": "postprocess",
    "ImageTracer": "image_trace", "ImageTrace": "image_trace", "num_classes_override": "image_trace",
    # the augmented sample the trainer sees: the train pipeline's stages and the final sample
    "training_sample": "sample_pipeline", "training_set": "sample_pipeline", "TrainingSample": "sample_pipeline",
    "PipelineStage": "sample_pipeline", "sample_input": "sample_pipeline", "sample_gt": "sample_pipeline",
    "trace_sample": "sample_pipeline", "train_split_indices": "sample_pipeline",
    "backbone_init_checkpoint": "pretrained",
    # the annotation document model (Qt-free)
    "AnnotationProject": "data.project", "Box": "data.project", "Category": "data.project",
    "split_indices": "data.project", "write_split": "data.project", "sample_project": "data.project",
    "DatasetError": "data.errors", "atomic_write_text": "io", "ReadOnlyFileError": "io", "pid_alive": "io",
    "check_output_path": "io", "OutputPathError": "io",
    # datasets in and out: YOLO / labelme / VOC / COCO, and what a dataset holds
    "detect_format": "data.formats", "OPEN_FORMATS": "data.formats", "DatasetProblem": "data.errors",
    "export_project": "data.export", "convert_dataset": "data.export", "ExportResult": "data.export",
    "EXPORT_FORMATS": "data.export", "IMAGE_MODES": "data.export", "read_image_size": "data.image_size",
    "dataset_stats": "data.stats", "DatasetStats": "data.stats", "Histogram": "data.stats",
    # evaluation on a project
    "checkpoint_class_names": "project_eval", "class_map": "project_eval", "per_image_counts": "project_eval",
    "LabelMap": "project_eval", "model_label_map": "project_eval",
    "match_detections": "project_eval", "evaluate_predictions": "project_eval", "predict_images": "project_eval",
    "EvalResult": "project_eval", "project_gt": "project_eval", "evaluate_project": "project_eval",
    "LoadedModel": "project_eval", "load_model": "project_eval",
    "COCO_METRIC_NAMES": "evaluation", "write_results": "evaluation",
    # the dataset scan
    "ScanItem": "scan", "ScanResult": "scan", "scan_items": "scan", "scan_project": "scan",
    # anchors fitted to a dataset
    "fit_anchors": "anchor_fit", "AnchorFit": "anchor_fit", "anchor_settings": "anchor_fit",
    # training runs
    "load_cfg": "train.runner", "read_jsonl": "train.events", "write_control": "train.control",
    "checkpoint_config": "train.runs", "config_for_checkpoint": "train.runs",
    "make_run_dir": "train.runs", "known_runs": "train.runs", "run_summary": "train.runs", "RunSummary": "train.runs",
    "RunCurves": "train.runs", "run_curves": "train.runs", "window_runs_root": "train.runs",
    "detscope_home": "train.runs", "register_run": "train.runs",
    # the per-GT probe of a run: each probe GT's positives and losses over the iterations
    "read_probe": "probe", "has_probe": "probe", "ProbeHistory": "probe", "ProbeGT": "probe",
    "probe_gt_in_project": "probe",
}

__all__ = sorted([*_LAZY, "inspect"])


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __package__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def inspect(image_shape, gt_boxes, gt_labels, config, predictions=None, **kwargs):
    """:func:`detengine.trace.inspect` (a :class:`DebugTrace`), also accepting a shipped config
    name (``"ssd300_coco"``)."""
    from .shipped import find_config
    from .trace import inspect as _inspect
    if isinstance(config, str) and not Path(config).exists():
        config = str(find_config(config))
    return _inspect(image_shape, gt_boxes, gt_labels, config, predictions, **kwargs)
