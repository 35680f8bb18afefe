"""Head cores: the non-learned logic of dense heads, shared by the trace and the detectors."""
from .anchor_head import AnchorHeadCore, SSDHeadCore
from .base import HeadCore, ImageLoss, Targets
from .featmaps import SSDMobileNetV2Rule, SSDVGGRule, StrideRule, TinySSDRule
from .rtmdet import RTMDetHeadCore
from .tinyssd import TinySSDHeadCore

__all__ = ["HeadCore", "Targets", "ImageLoss", "AnchorHeadCore", "SSDHeadCore", "RTMDetHeadCore",
           "TinySSDHeadCore", "SSDVGGRule", "SSDMobileNetV2Rule", "StrideRule", "TinySSDRule"]
