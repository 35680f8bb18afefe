"""mmdetection 3.3.0 peers for the benches: its heads' ``loss_by_feat`` / ``predict_by_feat``, its
assigners and mmcv's ``batched_nms``, fed DetScope's own inputs (flat ``(A, K)`` head outputs in
prior order are laid out as mmdetection's per-level ``(1, A_l * K, H, W)`` maps).

Only with the reference venv of tests/engine/fixtures/README.md (``/tmp/mmref/bin/python``, which
sees this checkout); :func:`load` says why not elsewhere. mmcv-lite has no compiled ``mmcv._ext``:
``make_mmdet_reference``'s stub runs its ``nms`` with ``torchvision.ops.nms`` (the same algorithm
as mmcv's CPU kernel), everything else of mmcv / mmdetection is its own Python.
"""
from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_STATE: dict = {}


def load() -> str | None:
    """Import mmdetection (with the mmcv stub); None when it imports, else the reason it does not."""
    if "error" not in _STATE:
        try:
            sys.path.insert(0, str(ROOT / "tests" / "engine" / "fixtures"))
            sys.path.insert(0, str(ROOT / "tests" / "engine"))
            import make_mmdet_reference  # noqa: F401  (the mmcv._ext stub, register_all_modules)
            import mmdet
            _STATE["error"] = None
            _STATE["version"] = mmdet.__version__
        except ImportError as exc:
            _STATE["error"] = f"mmdetection not importable ({exc.name or exc})"
    return _STATE["error"]


def version() -> str | None:
    return None if load() else _STATE["version"]


def _instances(**kw):
    from mmengine.structures import InstanceData
    return InstanceData(**kw)


def head(config: str):
    """The ``bbox_head`` of mmdetection's own config ``config`` (tests/engine/mmdet_layout_configs.py,
    e.g. ``ssd300_coco``, ``retinanet_r50_fpn_1x_coco``) with its train / test cfg, built by MODELS."""
    from mmdet.registry import MODELS
    from mmdet_layout_configs import CONFIGS
    from mmengine.config import ConfigDict
    cfg = copy.deepcopy(CONFIGS[config])
    h = MODELS.build(dict(cfg["bbox_head"], train_cfg=ConfigDict(cfg["train_cfg"]), test_cfg=ConfigDict(cfg["test_cfg"])))
    if not hasattr(h, "loss_cls"):
        # mmdet 3.3.0 bug (#11063): SSDHead.predict_by_feat reads self.loss_cls, which SSDHead never
        # sets; an attribute-less stand-in takes the softmax branch (as make_mmdet_reference.py does)
        h.loss_cls = types.SimpleNamespace()
    return h.eval()


def assigner_cfg(config: str) -> dict:
    """``train_cfg.assigner`` of mmdetection's own config ``config``."""
    from mmdet_layout_configs import CONFIGS
    return copy.deepcopy(CONFIGS[config]["train_cfg"]["assigner"])


def levels(flat: torch.Tensor, featmap_sizes, num_base_priors) -> list[torch.Tensor]:
    """(A, K) in prior order (level, y, x, anchor) -> per level (1, A_l * K, H, W), mmdetection's layout."""
    out, start = [], 0
    for (h, w), a in zip(featmap_sizes, num_base_priors):
        n = h * w * a
        out.append(flat[start:start + n].reshape(h, w, a * flat.shape[1]).permute(2, 0, 1)[None].contiguous())
        start += n
    assert start == flat.shape[0], (start, flat.shape)
    return out


def _metas(img_shape, pad_shape):
    return [dict(img_shape=tuple(img_shape), pad_shape=tuple(pad_shape), batch_input_shape=tuple(pad_shape),
                 scale_factor=(1.0, 1.0))]


def head_loss(config: str, core, cls, reg, gt_boxes, gt_labels, shape, img_shape=None):
    """``loss_by_feat`` of one image as a zero-argument call; also the summed loss terms."""
    h = head(config)
    sizes = core.featmap_sizes(shape)
    cls_l, reg_l = levels(cls, sizes, core.num_base_priors), levels(reg, sizes, core.num_base_priors)
    gts = [_instances(bboxes=gt_boxes.float(), labels=gt_labels.long())]
    metas = _metas(img_shape or shape, shape)

    def call():
        return h.loss_by_feat(cls_l, reg_l, gts, metas)
    terms = {k: float(sum(v) if isinstance(v, (list, tuple)) else v) for k, v in call().items()}
    return call, terms


def head_predict(config: str, core, cls, reg, shape):
    """``predict_by_feat`` (rescale=False, with NMS) of one image as a zero-argument call; also its result."""
    h = head(config)
    sizes = core.featmap_sizes(shape)
    cls_l, reg_l = levels(cls, sizes, core.num_base_priors), levels(reg, sizes, core.num_base_priors)
    metas = _metas(shape, shape)

    def call():
        return h.predict_by_feat(cls_l, reg_l, batch_img_metas=metas, rescale=False, with_nms=True)[0]
    return call, call()


def max_iou(assigner_cfg: dict, priors: torch.Tensor, gt_boxes, gt_labels):
    """mmdetection's MaxIoUAssigner(**assigner_cfg).assign as a zero-argument call returning gt_inds."""
    from mmdet.models.task_modules.assigners import MaxIoUAssigner
    a = MaxIoUAssigner(**{k: v for k, v in assigner_cfg.items() if k != "type"})
    pred, gt = _instances(priors=priors), _instances(bboxes=gt_boxes.float(), labels=gt_labels.long())
    return lambda: a.assign(pred, gt).gt_inds


def atss(topk: int, priors: torch.Tensor, num_level_priors, gt_boxes, gt_labels):
    """mmdetection's ATSSAssigner(topk).assign as a zero-argument call returning gt_inds."""
    from mmdet.models.task_modules.assigners import ATSSAssigner
    a = ATSSAssigner(topk=topk)
    pred, gt = _instances(priors=priors), _instances(bboxes=gt_boxes.float(), labels=gt_labels.long())
    return lambda: a.assign(pred, list(num_level_priors), gt).gt_inds


def batched_nms(boxes, scores, labels, iou_threshold: float):
    """mmcv's ``batched_nms`` (class offsets below split_thr 10,000, a loop over classes above) as a
    zero-argument call returning the kept indices."""
    from mmcv.ops import batched_nms as mmcv_batched_nms
    cfg = dict(type="nms", iou_threshold=iou_threshold)
    return lambda: mmcv_batched_nms(boxes, scores, labels, cfg)[1]
