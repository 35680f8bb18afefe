"""Checkpoints: written atomically, read with ``weights_only=True`` (a file can never run code)."""
from __future__ import annotations

import io
import random
from pathlib import Path

import torch

from ..io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_weights", "rng_state", "set_rng_state"]


def rng_state() -> dict:
    """Python, torch (and CUDA) generator states, in types ``weights_only`` loading accepts."""
    state = {"python": list(random.getstate()[1]), "python_pos": random.getstate()[2],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, payload: dict) -> Path:
    """``torch.save`` to memory, then an atomic write: a crash leaves the previous file intact."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint written by :func:`save_checkpoint` (or any plain tensor dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def load_model_weights(model: torch.nn.Module, path, strict: bool = True) -> dict:
    """Load a DetScope checkpoint's ``model`` entry, or a plain ``state_dict``, into ``model``."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("model", ckpt.get("state_dict", ckpt))
    result = model.load_state_dict(state, strict=strict)
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys),
            "meta": {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "scaler")}}
