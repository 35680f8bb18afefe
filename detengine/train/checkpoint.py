"""Checkpoints: written atomically, read with ``weights_only=True`` (a file can never run code)."""
from __future__ import annotations

import io
import random
import re
from pathlib import Path

import torch

from ..io import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_weights", "load_state_checked", "from_mmdet_names",
           "mmdet_to_detscope_name",
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


# mmdetection 3.x parameter names -> DetScope's, family by family (tests/engine/test_checkpoint_names.py
# writes mmdetection's published names out and checks each rule). The whole map is applied only
# when it makes every key fit; a partial fit is reported key by key by load_state_checked.
_MMDET_RENAMES = (
    (r"^bbox_head\.", lambda m, n: "head."),                                            # every family
    # RTMDet: CSPNeXt's stage1..4 are our stages.0..3 (the rest of its network has mmdetection's names)
    (r"^backbone\.stage(\d+)\.", lambda m, n: f"backbone.stages.{int(m[1]) - 1}."),
    # SSD: SSDHead wraps each level's conv in a Sequential (cls_convs.L.0), ours is the conv itself
    (r"^head\.(cls|reg)_convs\.(\d+)\.0\.(weight|bias)$", lambda m, n: f"head.{m[1]}_convs.{m[2]}.{m[3]}"),
    # RetinaNet: mmdetection's ResNet names the stem conv1 / bn1 and the stages layer1..4
    (r"^backbone\.conv1\.", lambda m, n: "backbone.stem.0."),
    (r"^backbone\.bn1\.", lambda m, n: "backbone.stem.1."),
    (r"^backbone\.layer(\d)\.", lambda m, n: f"backbone.stages.{int(m[1]) - 1}."),
    # FPN: ConvModules (.conv); the extra P6/P7 convs continue fpn_convs after the laterals' outputs
    (r"^neck\.lateral_convs\.(\d+)\.conv\.", lambda m, n: f"neck.lateral_convs.{m[1]}."),
    (r"^neck\.fpn_convs\.(\d+)\.conv\.", lambda m, n: f"neck.fpn_convs.{m[1]}." if int(m[1]) < n
     else f"neck.extra_convs.{int(m[1]) - n}."),
)
_MMDET_RULES = tuple((re.compile(pattern), repl) for pattern, repl in _MMDET_RENAMES)
# RetinaHead only: its towers are ConvModules (cls_convs.i.conv); ours interleave conv and ReLU in one
# Sequential. FCOS / ATSS towers keep mmdetection's ConvModule names (cls_convs.i.conv, cls_convs.i.gn).
_RETINA_TOWER_RULE = (re.compile(r"^head\.(cls|reg)_convs\.(\d+)\.conv\."),
                      lambda m, n: f"head.{m[1]}_convs.{2 * int(m[2])}.")


def _num_fpn_outputs(model: torch.nn.Module) -> int:
    lateral = getattr(getattr(model, "neck", None), "lateral_convs", None)
    return len(lateral) if isinstance(lateral, torch.nn.ModuleList) else 0


def _has_retina_towers(model: torch.nn.Module) -> bool:
    """The head's towers are one Sequential of conv, ReLU, conv ... (RetinaHead's layout here)."""
    tower = getattr(getattr(model, "head", None), "cls_convs", None)
    return isinstance(tower, torch.nn.Sequential) and len(tower) > 0 and isinstance(tower[0], torch.nn.Conv2d)


def mmdet_to_detscope_name(key: str, num_fpn_outputs: int = 0, retina_towers: bool = True) -> str:
    """One mmdetection 3.x parameter name as DetScope names it (rules applied in order);
    ``retina_towers``: the model's head is a RetinaHead (its ConvModule towers are renumbered)."""
    rules = _MMDET_RULES + ((_RETINA_TOWER_RULE,) if retina_towers else ())
    for pattern, repl in rules:
        key = pattern.sub(lambda m: repl(m, num_fpn_outputs), key, count=1)
    return key


def _is_mmdet_layout(state: dict) -> bool:
    return any(k.startswith(("bbox_head.", "data_preprocessor.")) for k in state)


def from_mmdet_names(model: torch.nn.Module, state: dict) -> dict:
    """``state`` with mmdetection's names translated to DetScope's when it is an mmdetection 3.x
    ``state_dict`` (a ``bbox_head.`` key; its ``data_preprocessor`` buffers are dropped);
    otherwise ``state`` unchanged."""
    if not _is_mmdet_layout(state) or set(state) == set(model.state_dict()):
        return state
    n, retina = _num_fpn_outputs(model), _has_retina_towers(model)
    # SSDLite's MobileNetV2 has mmdetection's own names (its conv1 / layerN are not a ResNet's)
    own_backbone = hasattr(getattr(model, "backbone", None), "layer7")

    def name(key: str) -> str:
        return key if own_backbone and key.startswith("backbone.") else mmdet_to_detscope_name(key, n, retina)
    return {name(key): value for key, value in state.items() if not key.startswith("data_preprocessor.")}


# torchvision's detection models: same detectors, other architecture details (why they do not load)
_TORCHVISION_LAYOUTS = {
    "head.classification_head.module_list.": "torchvision's ssd300_vgg16: its default boxes are clipped to the image "
    "(the 1.05 x 300 px priors of the last level become 300 px), its class logits put the background first "
    "over COCO's 91 ids, and its VGG16 is ssd.pytorch's; a DetScope SSD300 cannot reproduce its predictions",
    "backbone.fpn.inner_blocks.": "torchvision's retinanet_resnet50_fpn: its P6 is computed from P5 (256 channels) "
    "where mmdetection's RetinaNet, which DetScope builds, computes it from C5 (2048 channels), and its BatchNorm "
    "is frozen; its weights do not fit",
}


def load_state_checked(model: torch.nn.Module, state: dict, source) -> None:
    """``model.load_state_dict(state)`` (strict), with a message naming ``source`` and saying
    what does not fit instead of torch's list of keys. mmdetection's own names are accepted
    (:func:`from_mmdet_names`); a key that does not fit is named as the checkpoint names it."""
    for marker, why in _TORCHVISION_LAYOUTS.items():
        if any(k.startswith(marker) for k in state):
            raise ValueError(f"{source} is a state dict of {why}")
    renamed = from_mmdet_names(model, state)
    n, retina = _num_fpn_outputs(model), _has_retina_towers(model)
    original = ({mmdet_to_detscope_name(k, n, retina): k for k in state if not k.startswith("data_preprocessor.")}
                if renamed is not state else {})
    state = renamed
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

    def named(key):  # as the checkpoint names it, when it was translated
        return f"{key} (the checkpoint's {original[key]})" if original.get(key, key) != key else key
    parts = [f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
             f"{len(unexpected)} unexpected (e.g. {named(unexpected[0])})" if unexpected else "",
             f"{len(shapes)} of another shape (e.g. {named(shapes[0])}: {tuple(state[shapes[0]].shape)} in the "
             f"checkpoint, {tuple(own[shapes[0]].shape)} in the model)" if shapes else ""]
    layout = " (mmdetection's layout, names translated)" if original else ""
    raise ValueError(f"{source}{layout} does not fit this model: {'; '.join(p for p in parts if p)}. Was it "
                     f"trained with another config or number of classes?")


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
