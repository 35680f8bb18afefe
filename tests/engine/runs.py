"""A tiny training config shared by the training tests."""
from __future__ import annotations

from pathlib import Path

from detengine.train.runner import load_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


def tiny_tinyssd_cfg(root, *, probe: bool = False) -> dict:
    """TinySSD on a 12 + 4 image synthetic set in ``root``, batch 6 (2 iterations per epoch).

    The per-GT probe is off unless ``probe`` (then the shipped ``interval='auto'``): it forwards
    all 12 images at the start and at the end of every run, and test_probe.py is where it is
    tested."""
    cfg = load_cfg(CONFIGS / "tinyssd_banana.py")
    cfg["data"] = {"default": "synthetic", "synthetic": {"root": str(root), "num_train": 12, "num_val": 4,
                                                          "image_size": 128, "seed": 3}}
    cfg["train_dataloader"] = {"batch_size": 6, "num_workers": 0}
    if not probe:
        cfg["probe"] = {"interval": 0}
    return cfg
