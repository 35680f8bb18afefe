"""Trainable detectors built from configs; their head logic is :mod:`detengine.heads`."""
from .builder import DETECTOR_TYPES, build_detector
from .detector import DenseDetector, Detections

__all__ = ["build_detector", "DenseDetector", "Detections", "DETECTOR_TYPES"]
