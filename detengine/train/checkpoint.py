"""Checkpoints: written atomically, read with ``weights_only=True`` (a file can never run code)."""
from __future__ import annotations

import io
import random
import re
from pathlib import Path

import torch

from ..io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_weights", "load_state_checked", "from_mmdet_names",
           "rng_state", "set_rng_state"]


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


# mmdetection's parameter names -> DetScope's, where they differ (RTMDet: its network equals ours
# entry by entry, tests/engine/test_optim_ema.py); applied only when it makes every key fit.
_MMDET_RENAMES = ((re.compile(r"^bbox_head\."), lambda m: "head."),
                  (re.compile(r"^backbone\.stage(\d+)\."), lambda m: f"backbone.stages.{int(m.group(1)) - 1}."))


def from_mmdet_names(model: torch.nn.Module, state: dict) -> dict:
    """``state`` with mmdetection's names translated to ``model``'s when that makes them all fit
    (an mmdetection checkpoint's ``state_dict``: its ``data_preprocessor`` buffers are dropped);
    otherwise ``state`` unchanged."""
    own = model.state_dict()
    if set(state) == set(own):
        return state
    renamed = {}
    for key, value in state.items():
        if key.startswith("data_preprocessor."):
            continue
        for pattern, repl in _MMDET_RENAMES:
            key = pattern.sub(repl, key)
        renamed[key] = value
    return renamed if set(renamed) == set(own) else state


def load_state_checked(model: torch.nn.Module, state: dict, source) -> None:
    """``model.load_state_dict(state)`` (strict), with a message naming ``source`` and saying
    what does not fit instead of torch's list of keys. mmdetection's own names are accepted
    (:func:`from_mmdet_names`)."""
    state = from_mmdet_names(model, state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    if unexpected and not missing and not shapes and all(k.startswith("neck.") and ".attention." in k
                                                         for k in unexpected):
        raise ValueError(f"{source} is an RTMDet checkpoint from an older DetScope whose neck had channel "
                         f"attention (mmdetection's has none, and DetScope now matches it): train it again")
    parts = [f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
             f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
             f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
    raise ValueError(f"{source} does not fit this model: {'; '.join(p for p in parts if p)}. Was it trained "
                     f"with another config or number of classes?")


def load_model_weights(model: torch.nn.Module, path, strict: bool = True) -> dict:
    """Load a DetScope checkpoint's ``model`` entry, or a plain ``state_dict``, into ``model``."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("model", ckpt.get("state_dict", ckpt))
    if strict:
        load_state_checked(model, state, path)
        missing, unexpected = [], []
    else:
        result = model.load_state_dict(state, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    return {"missing": missing, "unexpected": unexpected,
            "meta": {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "scaler")}}
