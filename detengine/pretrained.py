"""Pretrained weights and fine-tuning, as mmdetection configs say them.

- ``model.backbone.init_cfg=dict(type='Pretrained', checkpoint=..., prefix=None)``: the backbone
  starts from those weights (mmengine's ``PretrainedInit``, applied before training only).
- ``load_from=...``: every weight of a checkpoint, before step 1 (mmengine's ``Runner.load_checkpoint``
  with ``strict=False``: weights of another shape, e.g. a head for another number of classes,
  keep their initial values and are reported).
- ``resume=True``: continue the latest checkpoint of the work folder (``load_from`` when given).

Where a checkpoint comes from: a local file first; ``torchvision://NAME`` and ``open-mmlab://NAME``
are the URLs mmengine gives those names; a URL is looked up in torch hub's cache
(``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints``), where mmdetection and
torchvision keep their downloads, then downloaded through ``torch.hub``; offline, the error
names the file to place and where.
"""
from __future__ import annotations

import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import torch

__all__ = ["WeightsUnavailable", "checkpoint_url", "resolve_checkpoint", "hub_cache_dir", "load_weights_file",
           "backbone_init_checkpoint", "apply_backbone_init", "load_from_checkpoint", "OPEN_MMLAB_URLS"]

# mmcv / mmengine's model_zoo/open_mmlab.json entries for the backbones mmdetection's dense
# detectors start from (the rest of that table serves other repositories)
OPEN_MMLAB_URLS = {
    "vgg16_caffe": "https://download.openmmlab.com/pretrain/third_party/vgg16_caffe-292e1171.pth",
    "detectron/resnet50_caffe": "https://download.openmmlab.com/pretrain/third_party/resnet50_caffe-788b5fa3.pth",
    "detectron2/resnet50_caffe": "https://download.openmmlab.com/pretrain/third_party/resnet50_msra-5891d200.pth",
    "detectron/resnet101_caffe": "https://download.openmmlab.com/pretrain/third_party/resnet101_caffe-3ad79236.pth",
    "detectron2/resnet101_caffe": "https://download.openmmlab.com/pretrain/third_party/resnet101_msra-6cc46731.pth",
    "resnext50_32x4d": "https://download.openmmlab.com/pretrain/third_party/resnext50-32x4d-0ab1a123.pth",
    "resnext101_32x4d": "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth",
}


class WeightsUnavailable(FileNotFoundError):
    """A checkpoint that is neither a local file, nor in the hub cache, nor downloadable now."""


def hub_cache_dir() -> Path:
    """Where torch.hub (and so mmengine and torchvision) keep downloaded checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def checkpoint_url(spec: str) -> str | None:
    """The URL mmengine downloads for ``spec``; None for a plain path."""
    if spec.startswith(("http://", "https://")):
        return spec
    if spec.startswith("torchvision://"):
        return _torchvision_url(spec[len("torchvision://"):])
    if spec.startswith(("open-mmlab://", "openmmlab://")):
        name = spec.split("://", 1)[1]
        if name not in OPEN_MMLAB_URLS:
            raise ValueError(f"{spec}: unknown open-mmlab name; known here: {', '.join(sorted(OPEN_MMLAB_URLS))} "
                             "(or give the checkpoint file's path or URL)")
        return OPEN_MMLAB_URLS[name]
    if "://" in spec:
        raise ValueError(f"{spec}: scheme {spec.split('://')[0]}:// is not supported; give a file path, a URL, "
                         "torchvision://NAME or open-mmlab://NAME")
    return None


def _torchvision_url(name: str) -> str:
    """mmengine's ``torchvision://``: ``resnet50`` is torchvision 0.12's URL (IMAGENET1K_V1),
    ``resnet50.imagenet1k_v2`` names a weights entry."""
    import torchvision
    model, _, weights = name.partition(".")
    try:
        enum = torchvision.models.get_model_weights(model)
    except (ValueError, KeyError):
        raise ValueError(f"torchvision://{name}: torchvision has no model {model!r}") from None
    wanted = weights.upper() if weights else "IMAGENET1K_V1"
    if wanted not in enum.__members__:
        wanted = "DEFAULT" if not weights else wanted
    if wanted not in enum.__members__:
        raise ValueError(f"torchvision://{name}: no weights {weights!r}; torchvision has "
                         f"{', '.join(m.lower() for m in enum.__members__)}")
    return enum[wanted].url


def resolve_checkpoint(spec: str | Path, *, download: bool = True) -> Path:
    """A local file for ``spec`` (path, URL, ``torchvision://``, ``open-mmlab://``): the file
    itself, else torch hub's cache, else a download through ``torch.hub`` (when ``download``)."""
    spec = str(spec)
    url = checkpoint_url(spec)
    if url is None:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"checkpoint {spec} does not exist")
        return path
    cached = hub_cache_dir() / Path(urlparse(url).path).name
    if cached.is_file():
        return cached
    place = (f"download {url} and place it at {cached} (torch hub's cache; $TORCH_HOME moves it), or give the "
             "file's path instead")
    if not download:
        raise WeightsUnavailable(f"{spec} is not in torch hub's cache: {place}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        cached.unlink(missing_ok=True)
        raise WeightsUnavailable(f"{spec}: cannot download ({type(exc).__name__}: {exc}); {place}") from None
    return cached


def load_weights_file(path: Path) -> dict:
    """The state dict in a checkpoint file (``state_dict`` / ``model`` entry, or the file itself),
    read with ``weights_only=True``; ``module.`` prefixes (DDP) removed as mmengine does."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    state = ckpt.get("state_dict", ckpt.get("model", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def backbone_init_checkpoint(model_cfg: dict) -> dict | None:
    """``model.backbone.init_cfg`` when it is ``Pretrained`` (a dict, or one entry of a list)."""
    init = (model_cfg.get("backbone") or {}).get("init_cfg")
    for entry in init if isinstance(init, list) else [init]:
        if isinstance(entry, dict) and entry.get("type") == "Pretrained":
            if not entry.get("checkpoint"):
                raise ValueError("model.backbone.init_cfg: type='Pretrained' needs a checkpoint")
            return entry
    return None


def _fit(module: torch.nn.Module, state: dict) -> tuple[dict, list[str], list[str], list[str]]:
    """The entries of ``state`` that fit ``module`` by name and shape; missing, unexpected, reshaped."""
    own = module.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
                if k in own and k not in fits]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    return fits, missing, unexpected, reshaped


def _report(what: str, loaded: int, missing, unexpected, reshaped) -> str:
    parts = [f"{what}: {loaded} weights loaded"]
    if missing:
        parts.append(f"{len(missing)} kept their initial values (e.g. {', '.join(missing[:3])})")
    if reshaped:
        parts.append(f"{len(reshaped)} of another shape skipped (e.g. {', '.join(reshaped[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} in the file unused (e.g. {', '.join(unexpected[:3])})")
    return "; ".join(parts)


def apply_backbone_init(model, model_cfg: dict, *, download: bool = True) -> str | None:
    """Load ``model.backbone.init_cfg``'s Pretrained checkpoint into the backbone; the report
    line (for the run's log), or None when the config asks for no pretrained backbone."""
    init = backbone_init_checkpoint(model_cfg)
    if init is None:
        return None
    path = resolve_checkpoint(init["checkpoint"], download=download)
    state = load_weights_file(path)
    prefix = init.get("prefix")
    if prefix:  # mmengine: the part of a whole-detector checkpoint under this prefix
        prefix = prefix if prefix.endswith(".") else prefix + "."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{init['checkpoint']}: no weights under the prefix {prefix!r}")
    state = model.backbone.translate_pretrained(state) if hasattr(model.backbone, "translate_pretrained") else state
    fits, missing, unexpected, reshaped = _fit(model.backbone, state)
    if not fits:
        raise ValueError(f"{init['checkpoint']} ({path}) has no weight that fits this backbone "
                         f"(e.g. {', '.join(list(state)[:3])})")
    model.backbone.load_state_dict(fits, strict=False)
    return _report(f"backbone init_cfg {init['checkpoint']} ({path})", len(fits), missing, unexpected, reshaped)


def load_from_checkpoint(model, spec: str, *, download: bool = True) -> str:
    """``load_from``: every weight of a checkpoint (DetScope's or mmdetection's layout) that fits
    by name and shape; the report line. A file that fits nothing is an error."""
    from .train.checkpoint import from_mmdet_names
    path = resolve_checkpoint(spec, download=download)
    state = from_mmdet_names(model, load_weights_file(path))
    fits, missing, unexpected, reshaped = _fit(model, state)
    if not fits:
        raise ValueError(f"load_from {spec} ({path}) has no weight that fits this model "
                         f"(e.g. {', '.join(list(state)[:3])})")
    model.load_state_dict(fits, strict=False)
    return _report(f"load_from {spec}", len(fits), missing, unexpected, reshaped)
