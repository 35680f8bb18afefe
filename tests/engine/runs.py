"""A tiny training config shared by the training tests."""
from __future__ import annotations

from pathlib import Path

from detengine.train.runner import load_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


def tiny_tinyssd_cfg(root) -> dict:
    """TinySSD on a 12 + 4 image synthetic set in ``root``, batch 6 (2 iterations per epoch)."""
    cfg = load_cfg(CONFIGS / "tinyssd_banana.py")
    cfg["data"] = {"default": "synthetic", "synthetic": {"root": str(root), "num_train": 12, "num_val": 4,
                                                          "image_size": 128, "seed": 3}}
    cfg["train_dataloader"] = {"batch_size": 6, "num_workers": 0}
    return cfg
