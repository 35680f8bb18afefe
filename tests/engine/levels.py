"""Per-level head outputs as mmdetection's fixtures store them, flattened as DetScope's heads take them."""
from __future__ import annotations

import torch

__all__ = ["flat_levels"]


def flat_levels(per_level, k: int) -> torch.Tensor:
    """[(B, K, H, W) per level] -> (B, sum of H*W, K), levels in order, row-major cells."""
    return torch.cat([t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, k) for t in per_level], dim=1)
