"""Prior generators: anchors (SSD, RetinaNet, legacy variants), points (RTMDet / FCOS), d2l.

Every generator returns a :class:`Priors`: the priors of all levels concatenated in the order a
head's ``permute(0, 2, 3, 1).reshape(B, -1, K)`` produces (level, then row, then column, then
base prior), plus, for every prior, its level, feature cell (row, col) and base-prior index, so a
GUI can go from a click to the priors of that cell and back.

Numbers follow mmdetection 3.x (``mmdet/models/task_modules/prior_generators``) bit for bit:
float32 arithmetic in the same order, ``ratio = h / w``, SSD sizes int-truncated, no clipping.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Priors", "AnchorGenerator", "LegacyAnchorGenerator", "SSDAnchorGenerator",
    "LegacySSDAnchorGenerator", "MlvlPointGenerator", "D2LPriorGenerator", "multibox_prior",
    "ssd_min_max_sizes",
]


def _pair(value) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"stride must be a number or (w, h), got {value!r}")
        return (value[0], value[1])
    return (value, value)


@dataclass(frozen=True)
class Priors:
    """All priors of one image, levels concatenated.

    Attributes:
        tensor (Tensor[A, 4]): xyxy anchors, or ``[x, y, stride_w, stride_h]`` for point priors.
        level, row, col, base_index (Tensor[A] long): where each prior comes from.
        valid (Tensor[A] bool): False for priors of the padded area (``valid_flags``).
        featmap_sizes: per level ``(h, w)``.  strides: per level ``(stride_w, stride_h)``.
        num_base_priors: priors per cell, per level.  is_point: point priors (no box).
    """

    tensor: Tensor
    level: Tensor
    row: Tensor
    col: Tensor
    base_index: Tensor
    valid: Tensor
    featmap_sizes: list[tuple[int, int]]
    strides: list[tuple[float, float]]
    num_base_priors: list[int]
    is_point: bool = False
    normalized: Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def __repr__(self) -> str:
        kind = "points" if self.is_point else "anchors"
        return (f"Priors({len(self)} {kind}, levels={self.num_levels}, "
                f"per_level={self.num_per_level}, valid={int(self.valid.sum())})")

    @property
    def num_levels(self) -> int:
        return len(self.featmap_sizes)

    @property
    def num_per_level(self) -> list[int]:
        return [h * w * a for (h, w), a in zip(self.featmap_sizes, self.num_base_priors)]

    @property
    def level_offsets(self) -> list[int]:
        """Index of the first prior of each level, plus the total at the end (L + 1 numbers)."""
        return [0] + np.cumsum(self.num_per_level).tolist()

    @property
    def centers(self) -> Tensor:
        """(A, 2) prior centres (the point itself for point priors)."""
        t = self.tensor
        if self.is_point:
            return t[:, :2]
        return torch.stack([(t[:, 0] + t[:, 2]) / 2.0, (t[:, 1] + t[:, 3]) / 2.0], dim=-1)

    @property
    def boxes(self) -> Tensor:
        """(A, 4) xyxy boxes; a point prior is drawn as its stride-sized square."""
        if not self.is_point:
            return self.tensor
        c, s = self.tensor[:, :2], self.tensor[:, 2:4] / 2.0
        return torch.cat([c - s, c + s], dim=-1)

    @functools.cached_property
    def prior_strides(self) -> Tensor:
        """(A, 2) ``(stride_w, stride_h)`` of each prior's level (kept: the priors are cached per input
        size, and on a GPU the table's copy is a host sync)."""
        table = torch.tensor(self.strides, dtype=self.tensor.dtype, device=self.tensor.device)
        return table[self.level]

    def level_slice(self, level: int) -> slice:
        """Slice of the flat prior index that holds ``level``."""
        off = self.level_offsets
        return slice(off[level], off[level + 1])

    def cell_indices(self, level: int, row: int, col: int) -> Tensor:
        """Flat indices (Tensor[num_base_priors[level]]) of the priors of one feature cell."""
        h, w = self.featmap_sizes[level]
        if not (0 <= row < h and 0 <= col < w):
            raise IndexError(f"cell ({row}, {col}) outside level {level} of size {(h, w)}")
        a = self.num_base_priors[level]
        start = self.level_offsets[level] + (row * w + col) * a
        return torch.arange(start, start + a, device=self.tensor.device)

    def cell_at(self, level: int, x: float, y: float) -> tuple[int, int]:
        """Feature cell (row, col) of ``level`` whose prior centres are nearest to pixel (x, y)."""
        sl = self.level_slice(level)
        centers = self.centers[sl]
        d = (centers[:, 0] - x) ** 2 + (centers[:, 1] - y) ** 2
        i = int(torch.argmin(d)) + sl.start
        return int(self.row[i]), int(self.col[i])

    def split(self, values: Tensor) -> list[Tensor]:
        """Split a per-prior tensor (A, ...) into per-level tensors."""
        return list(torch.split(values, self.num_per_level, dim=0))


def _meshgrid(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Row-major flattened grid: x varies fastest (mmdetection's ``_meshgrid``)."""
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return xx.reshape(-1), yy.reshape(-1)


def _cell_index(featmap_sizes, num_base, device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(level, row, col, base_index) of every prior, flattened level/row/col/base."""
    parts = [[], [], [], []]
    for lvl, ((h, w), a) in enumerate(zip(featmap_sizes, num_base)):
        idx = torch.arange(h * w * a, device=device)
        parts[0].append(torch.full_like(idx, lvl))
        parts[1].append(idx // (w * a))
        parts[2].append((idx // a) % w)
        parts[3].append(idx % a)
    if not parts[0]:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, empty, empty
    return tuple(torch.cat(p) for p in parts)  # type: ignore[return-value]


def _valid_flags(featmap_sizes, strides, num_base, pad_shape, device) -> Tensor:
    """mmdetection's ``valid_flags``: cells beyond ``ceil(pad / stride)`` are invalid."""
    flags = []
    for (feat_h, feat_w), (sw, sh), a in zip(featmap_sizes, strides, num_base):
        if pad_shape is None:
            valid_h, valid_w = feat_h, feat_w
        else:
            valid_h = min(int(np.ceil(pad_shape[0] / sh)), feat_h)
            valid_w = min(int(np.ceil(pad_shape[1] / sw)), feat_w)
        vx = torch.zeros(feat_w, dtype=torch.bool, device=device)
        vy = torch.zeros(feat_h, dtype=torch.bool, device=device)
        vx[:valid_w] = True
        vy[:valid_h] = True
        xx, yy = _meshgrid(vx, vy)
        flags.append((xx & yy)[:, None].expand(-1, a).reshape(-1))
    if not flags:
        return torch.zeros(0, dtype=torch.bool, device=device)
    return torch.cat(flags)


def _check_featmap_sizes(featmap_sizes, num_levels: int) -> list[tuple[int, int]]:
    sizes = [(int(h), int(w)) for h, w in featmap_sizes]
    if len(sizes) != num_levels:
        raise ValueError(f"expected {num_levels} feature-map sizes, got {len(sizes)}: {sizes}")
    return sizes


class _GridGenerator:
    """Shared plumbing: per-level grids -> one :class:`Priors`."""

    strides: list[tuple[float, float]]
    is_point = False

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_priors(self) -> list[int]:
        raise NotImplementedError

    def single_level_grid_priors(self, featmap_size, level: int, device="cpu") -> Tensor:
        raise NotImplementedError

    def grid_priors(self, featmap_sizes, pad_shape=None, device="cpu") -> Priors:
        """Priors of all levels for ``featmap_sizes`` [(h, w), ...].

        ``pad_shape = (h, w)`` of the image content inside a padded batch: priors of cells past
        ``ceil(pad / stride)`` are flagged invalid. None: all valid.
        """
        sizes = _check_featmap_sizes(featmap_sizes, self.num_levels)
        per_level = [self.single_level_grid_priors(s, i, device) for i, s in enumerate(sizes)]
        tensor = torch.cat(per_level) if per_level else torch.zeros(0, 4, device=device)
        level, row, col, base = _cell_index(sizes, self.num_base_priors, device)
        valid = _valid_flags(sizes, self.strides, self.num_base_priors, pad_shape, device)
        return Priors(tensor, level, row, col, base, valid, sizes, list(self.strides),
                      list(self.num_base_priors), is_point=self.is_point)

    def valid_flags(self, featmap_sizes, pad_shape, device="cpu") -> list[Tensor]:
        """Per-level valid flags (mmdetection's layout), for comparison with the reference."""
        sizes = _check_featmap_sizes(featmap_sizes, self.num_levels)
        flat = _valid_flags(sizes, self.strides, self.num_base_priors, pad_shape, device)
        counts = [h * w * a for (h, w), a in zip(sizes, self.num_base_priors)]
        return list(torch.split(flat, counts))


class AnchorGenerator(_GridGenerator):
    """mmdetection 3.x ``AnchorGenerator`` (RetinaNet, ATSS, Faster R-CNN RPN ...).

    Keyword-only; ``ratios`` are h / w; ``scales`` or (``octave_base_scale``,
    ``scales_per_octave``) give the anchor sizes relative to ``base_sizes`` (default: the
    strides). ``scale_major=True`` (the class default) orders base anchors ratio-outer,
    scale-inner. Centres sit at ``center_offset * base_size`` + ``k * stride``.
    """

    legacy = False

    def __init__(self, *, strides, ratios, scales=None, base_sizes=None, scale_major=True,
                 octave_base_scale=None, scales_per_octave=None, centers=None,
                 center_offset=0.0):
        self.strides = [_pair(s) for s in strides]
        self.base_sizes = list(base_sizes) if base_sizes is not None else [min(s) for s in self.strides]
        if len(self.base_sizes) != len(self.strides):
            raise ValueError(f"base_sizes {self.base_sizes} and strides {strides} differ in length")
        if centers is not None and len(centers) != len(self.strides):
            raise ValueError(f"centers {centers} and strides {strides} differ in length")
        if (scales is None) == (octave_base_scale is None or scales_per_octave is None):
            raise ValueError("give either scales or both octave_base_scale and scales_per_octave")
        if scales is not None:
            self.scales = torch.Tensor(scales)
        else:
            octave = np.array([2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
            self.scales = torch.Tensor(octave * octave_base_scale)
        self.octave_base_scale, self.scales_per_octave = octave_base_scale, scales_per_octave
        self.ratios = torch.Tensor(ratios)
        self.scale_major = scale_major
        self.centers = centers
        self.center_offset = center_offset
        self.base_anchors = self.gen_base_anchors()

    @property
    def num_base_priors(self) -> list[int]:
        return [int(b.shape[0]) for b in self.base_anchors]

    def gen_base_anchors(self) -> list[Tensor]:
        """Per level (Tensor[K, 4]) anchors of the cell at the origin."""
        out = []
        for i, base_size in enumerate(self.base_sizes):
            center = None if self.centers is None else self.centers[i]
            out.append(self.gen_single_level_base_anchors(base_size, self.scales, self.ratios, center))
        return out

    def _base_wh(self, base_size, scales: Tensor, ratios: Tensor) -> tuple[Tensor, Tensor]:
        w = h = base_size
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        if self.scale_major:
            ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)
            hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
        else:
            ws = (w * scales[:, None] * w_ratios[None, :]).view(-1)
            hs = (h * scales[:, None] * h_ratios[None, :]).view(-1)
        return ws, hs

    def gen_single_level_base_anchors(self, base_size, scales, ratios, center=None) -> Tensor:
        """(K, 4) xyxy anchors centred on ``center`` (default ``center_offset * base_size``)."""
        ws, hs = self._base_wh(base_size, scales, ratios)
        if center is None:
            xc = self.center_offset * base_size
            yc = self.center_offset * base_size
        else:
            xc, yc = center
        return torch.stack([xc - 0.5 * ws, yc - 0.5 * hs, xc + 0.5 * ws, yc + 0.5 * hs], dim=-1)

    def single_level_grid_priors(self, featmap_size, level: int, device="cpu") -> Tensor:
        """(H * W * K, 4) anchors of one level: base anchors shifted by ``k * stride``."""
        feat_h, feat_w = featmap_size
        sw, sh = self.strides[level]
        base = self.base_anchors[level].to(device)
        shift_x = torch.arange(0, feat_w, device=device).to(base.dtype) * sw
        shift_y = torch.arange(0, feat_h, device=device).to(base.dtype) * sh
        xx, yy = _meshgrid(shift_x, shift_y)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1)
        return (base[None, :, :] + shifts[:, None, :]).view(-1, 4)  # (HW, K, 4) -> (HWK, 4)


class LegacyAnchorGenerator(AnchorGenerator):
    """mmdetection v1 / 2.0-era anchors: ``x_c ± 0.5 (w - 1)``, centre ``offset * (size - 1)``,
    rounded. Only for checkpoints trained with those anchors."""

    legacy = True

    def gen_single_level_base_anchors(self, base_size, scales, ratios, center=None) -> Tensor:
        ws, hs = self._base_wh(base_size, scales, ratios)
        if center is None:
            xc = self.center_offset * (base_size - 1)
            yc = self.center_offset * (base_size - 1)
        else:
            xc, yc = center
        anchors = [xc - 0.5 * (ws - 1), yc - 0.5 * (hs - 1), xc + 0.5 * (ws - 1), yc + 0.5 * (hs - 1)]
        return torch.stack(anchors, dim=-1).round()


# First-level sizes that mmdetection hard-codes, keyed by (input_size, basesize_ratio_range[0]).
_SSD_FIRST_LEVEL = {(300, 0.15): (7, 15), (300, 0.2): (10, 20), (512, 0.1): (4, 10), (512, 0.15): (7, 15)}


def ssd_min_max_sizes(input_size: int, basesize_ratio_range, num_levels: int) -> tuple[list[int], list[int]]:
    """SSD per-level (min_sizes, max_sizes) exactly as mmdetection computes them (int truncation)."""
    min_ratio, max_ratio = (int(r * 100) for r in basesize_ratio_range)
    step = int(np.floor(max_ratio - min_ratio) / (num_levels - 2))
    min_sizes = [int(input_size * r / 100) for r in range(min_ratio, max_ratio + 1, step)]
    max_sizes = [int(input_size * (r + step) / 100) for r in range(min_ratio, max_ratio + 1, step)]
    key = (input_size, basesize_ratio_range[0])
    if key not in _SSD_FIRST_LEVEL:
        raise ValueError(f"SSD anchors support input_size 300 with basesize_ratio_range[0] 0.15 or 0.2 "
                         f"and 512 with 0.1 or 0.15, got {input_size} and {basesize_ratio_range[0]}; "
                         f"give min_sizes and max_sizes instead")
    first_min, first_max = _SSD_FIRST_LEVEL[key]
    min_sizes.insert(0, int(input_size * first_min / 100))
    max_sizes.insert(0, int(input_size * first_max / 100))
    return min_sizes, max_sizes


class SSDAnchorGenerator(AnchorGenerator):
    """mmdetection 3.x ``SSDAnchorGenerator`` (SSD paper sec. 2.2, "choosing scales and aspect ratios").

    Per level: scales [1, sqrt(max/min)] of ``min_size``, ratios [1, 1/r, r for r in ratios[k]],
    base anchors scale-minor when ``scale_major=False`` (as SSD configs set) and the
    ``sqrt(min*max)`` square moved to position 1. Centres at ``stride / 2 + k * stride``.
    """

    def __init__(self, *, strides, ratios, min_sizes=None, max_sizes=None,
                 basesize_ratio_range=(0.15, 0.9), input_size=300, scale_major=True):
        if len(strides) != len(ratios):
            raise ValueError(f"strides {strides} and ratios {ratios} differ in length")
        if (min_sizes is None) != (max_sizes is None):
            raise ValueError("give both min_sizes and max_sizes, or neither")
        self.strides = [_pair(s) for s in strides]
        self.input_size = input_size
        self.basesize_ratio_range = tuple(basesize_ratio_range)
        if min_sizes is None:
            min_sizes, max_sizes = ssd_min_max_sizes(input_size, basesize_ratio_range, len(strides))
        if not len(min_sizes) == len(max_sizes) == len(strides):
            raise ValueError(f"min_sizes {min_sizes} / max_sizes {max_sizes} do not match {len(strides)} levels")
        self.min_sizes, self.max_sizes = list(min_sizes), list(max_sizes)
        self.centers = [(s[0] / 2.0, s[1] / 2.0) for s in self.strides]
        self.base_sizes = list(min_sizes)
        self.scales = [torch.Tensor([1.0, np.sqrt(mx / mn)]) for mn, mx in zip(min_sizes, max_sizes)]
        self.ratios = [torch.Tensor([1.0] + [v for r in rs for v in (1 / r, r)]) for rs in ratios]
        self.scale_major = scale_major
        self.center_offset = 0
        self.base_anchors = self.gen_base_anchors()

    def gen_base_anchors(self) -> list[Tensor]:
        out = []
        for i, base_size in enumerate(self.base_sizes):
            anchors = self.gen_single_level_base_anchors(base_size, self.scales[i], self.ratios[i],
                                                         self.centers[i])
            order = list(range(len(self.ratios[i])))
            order.insert(1, len(order))  # the sqrt(min*max) square goes second
            out.append(anchors[torch.tensor(order)])
        return out


class LegacySSDAnchorGenerator(SSDAnchorGenerator):
    """SSD anchors as mmdetection 2.0-era checkpoints used them: centres ``(stride - 1) / 2``,
    ``± 0.5 (w - 1)``, rounded (the code seed 000 prints)."""

    legacy = True

    def __init__(self, *, strides, ratios, basesize_ratio_range=(0.15, 0.9), input_size=300,
                 scale_major=True, min_sizes=None, max_sizes=None):
        super().__init__(strides=strides, ratios=ratios, basesize_ratio_range=basesize_ratio_range,
                         input_size=input_size, scale_major=scale_major,
                         min_sizes=min_sizes, max_sizes=max_sizes)
        self.centers = [((s[0] - 1) / 2.0, (s[1] - 1) / 2.0) for s in self.strides]
        self.base_anchors = self.gen_base_anchors()

    gen_single_level_base_anchors = LegacyAnchorGenerator.gen_single_level_base_anchors


class MlvlPointGenerator(_GridGenerator):
    """mmdetection's ``MlvlPointGenerator`` (FCOS, RTMDet): one point per cell at
    ``(k + offset) * stride``; priors are ``[x, y, stride_w, stride_h]`` (``with_stride``)."""

    is_point = True

    def __init__(self, *, strides, offset=0.0):
        self.strides = [_pair(s) for s in strides]
        self.offset = offset

    @property
    def num_base_priors(self) -> list[int]:
        return [1] * self.num_levels

    def single_level_grid_priors(self, featmap_size, level: int, device="cpu") -> Tensor:
        """(H * W, 4) ``[x, y, stride_w, stride_h]``, row-major."""
        feat_h, feat_w = featmap_size
        sw, sh = self.strides[level]
        shift_x = ((torch.arange(0, feat_w, device=device) + self.offset) * sw).to(torch.float32)
        shift_y = ((torch.arange(0, feat_h, device=device) + self.offset) * sh).to(torch.float32)
        xx, yy = _meshgrid(shift_x, shift_y)
        return torch.stack([xx, yy, torch.full_like(xx, sw), torch.full_like(yy, sh)], dim=-1)


def multibox_prior(featmap_size: tuple[int, int], sizes, ratios, device="cpu") -> Tensor:
    """d2l's ``multibox_prior`` (sec. 14.4): (H * W * (S + R - 1), 4) xyxy in [0, 1] units.

    Per pixel: every size with ``ratios[0]``, then ``sizes[0]`` with every other ratio; here
    ratio is w / h as in d2l, and widths are scaled by H / W for non-square maps.
    """
    in_height, in_width = featmap_size
    num_sizes, num_ratios = len(sizes), len(ratios)
    boxes_per_pixel = num_sizes + num_ratios - 1
    if in_height == 0 or in_width == 0:
        return torch.zeros((0, 4), device=device)
    size_tensor = torch.tensor(sizes, device=device)
    ratio_tensor = torch.tensor(ratios, device=device)
    center_h = (torch.arange(in_height, device=device) + 0.5) * (1.0 / in_height)
    center_w = (torch.arange(in_width, device=device) + 0.5) * (1.0 / in_width)
    shift_y, shift_x = torch.meshgrid(center_h, center_w, indexing="ij")
    shift_y, shift_x = shift_y.reshape(-1), shift_x.reshape(-1)
    w = torch.cat((size_tensor * torch.sqrt(ratio_tensor[0]),
                   sizes[0] * torch.sqrt(ratio_tensor[1:]))) * in_height / in_width
    h = torch.cat((size_tensor / torch.sqrt(ratio_tensor[0]), sizes[0] / torch.sqrt(ratio_tensor[1:])))
    manip = torch.stack((-w, -h, w, h)).T.repeat(in_height * in_width, 1) / 2
    grid = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1).repeat_interleave(boxes_per_pixel, dim=0)
    return grid + manip


class D2LPriorGenerator(_GridGenerator):
    """d2l TinySSD anchors behind the common interface: :func:`multibox_prior` per level, scaled
    to pixels of ``image_size`` (the normalised values stay in ``Priors.normalized``)."""

    def __init__(self, *, sizes, ratios, image_size=(256, 256)):
        if len(sizes) != len(ratios):
            raise ValueError(f"sizes ({len(sizes)} levels) and ratios ({len(ratios)}) differ")
        self.sizes = [list(s) for s in sizes]
        self.ratios = [list(r) for r in ratios]
        self.image_size = tuple(image_size)  # (h, w) of the network input
        self.strides = [(1.0, 1.0)] * len(sizes)  # replaced per call by image / featmap

    @property
    def num_base_priors(self) -> list[int]:
        return [len(s) + len(r) - 1 for s, r in zip(self.sizes, self.ratios)]

    def grid_priors(self, featmap_sizes, pad_shape=None, device="cpu") -> Priors:
        sizes = _check_featmap_sizes(featmap_sizes, self.num_levels)
        img_h, img_w = self.image_size
        normalized = torch.cat([multibox_prior(s, self.sizes[i], self.ratios[i], device)
                                for i, s in enumerate(sizes)])
        scale = normalized.new_tensor([img_w, img_h, img_w, img_h])
        strides = [(img_w / max(w, 1), img_h / max(h, 1)) for h, w in sizes]
        level, row, col, base = _cell_index(sizes, self.num_base_priors, device)
        valid = _valid_flags(sizes, strides, self.num_base_priors, pad_shape, device)
        return Priors(normalized * scale, level, row, col, base, valid, sizes, strides,
                      self.num_base_priors, normalized=normalized)

    def single_level_grid_priors(self, featmap_size, level: int, device="cpu") -> Tensor:
        img_h, img_w = self.image_size
        norm = multibox_prior(featmap_size, self.sizes[level], self.ratios[level], device)
        return norm * norm.new_tensor([img_w, img_h, img_w, img_h])

