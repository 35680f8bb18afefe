"""Assigners: which prior learns which ground truth. All return an :class:`AssignResult`."""
from .atss import ATSSAssigner
from .classic import D2LGreedyAssigner, SSDPytorchMatcher
from .dynamic_soft_label import DynamicSoftLabelAssigner
from .fcos import FCOSAssigner
from .max_iou import MaxIoUAssigner
from .result import REASON_TEXT, AssignResult, Reason
from .sim_ota import SimOTAAssigner
from .task_aligned import TaskAlignedAssigner

__all__ = ["AssignResult", "Reason", "REASON_TEXT", "MaxIoUAssigner", "ATSSAssigner",
           "DynamicSoftLabelAssigner", "SSDPytorchMatcher", "D2LGreedyAssigner", "FCOSAssigner",
           "TaskAlignedAssigner", "SimOTAAssigner"]
