"""RetinaNet (Lin et al. 2017): torchvision ResNet backbone, FPN P3-P7, ``RetinaHead``."""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import StagedBackbone, bias_init_with_prob, flatten_levels, normal_init, xavier_init

__all__ = ["ResNetBackbone", "FPN", "RetinaHeadModule"]


def _caffe_strides(net) -> None:
    """Caffe-style ResNet (MSRA's original): a stage's stride sits on its first block's 1x1 conv,
    not on the 3x3 (mmdetection's ``style='caffe'``). Same weights' shapes, other features."""
    for stage in (net.layer2, net.layer3, net.layer4):
        first = stage[0]
        if hasattr(first, "conv3"):                  # Bottleneck; BasicBlock has no 1x1 to move to
            first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)


class ResNetBackbone(StagedBackbone):
    """torchvision ResNet (``weights=None``: nothing is downloaded) returning C3, C4, C5.

    Pretrained weights come from the config's ``init_cfg`` (:mod:`detengine.pretrained`; torchvision
    and mmdetection name a ResNet's parts alike, :meth:`translate_pretrained`); ``weights_path``
    (an older DetScope key) is a local ``state_dict`` file loaded here. ``frozen_stages`` freezes
    the stem and the first stages; ``norm_eval`` keeps BN statistics fixed in training;
    ``norm_requires_grad=False`` (``norm_cfg.requires_grad``) freezes BN's affine weights, as
    mmdetection applies them.
    """

    def __init__(self, *, depth: int = 50, out_indices=(0, 1, 2, 3), frozen_stages: int = -1, norm_eval: bool = True,
                 norm_requires_grad: bool = True, weights_path: str | None = None, zero_init_residual: bool = True,
                 style: str = "pytorch", groups: int = 1, base_width: int = 64, **unused):
        super().__init__()
        import torchvision  # here: importing it costs ~1.3 s at start-up
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
        layers = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3]),
                  101: (Bottleneck, [3, 4, 23, 3]), 152: (Bottleneck, [3, 8, 36, 3])}
        if depth not in layers:
            raise ValueError(f"ResNet depth must be one of {sorted(layers)}, got {depth}")
        block, counts = layers[depth]
        if (groups, base_width) != (1, 64) and block is BasicBlock:
            raise ValueError(f"ResNeXt (groups={groups}, base_width={base_width}) needs a Bottleneck depth (50+)")
        # ResNeXt: mmdetection's Bottleneck width floor(planes * base_width / 64) * groups is torchvision's
        net = ResNet(block, counts, groups=groups, width_per_group=base_width, zero_init_residual=zero_init_residual)
        del torchvision
        if style == "caffe":
            _caffe_strides(net)
        elif style != "pytorch":
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")
        if weights_path:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            missing, unexpected = net.load_state_dict(state.get("state_dict", state), strict=False)
            if len(missing) > 10:
                raise ValueError(f"{weights_path} does not look like a ResNet-{depth} state_dict "
                                 f"({len(missing)} missing keys, e.g. {missing[:3]})")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_indices = tuple(out_indices)
        widths = [64, 128, 256, 512] if depth < 50 else [256, 512, 1024, 2048]
        self.out_channels = tuple(widths[i] for i in self.out_indices)
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        if not norm_requires_grad:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.requires_grad_(False)
        self._freeze()

    _PRETRAINED_NAMES = ((re.compile(r"^conv1\."), "stem.0."), (re.compile(r"^bn1\."), "stem.1."),
                         (re.compile(r"^layer(\d)\."), lambda m: f"stages.{int(m[1]) - 1}."))

    @classmethod
    def translate_pretrained(cls, state: dict) -> dict:
        """A torchvision / mmdetection ResNet state dict (conv1, bn1, layer1..4, fc) in our names."""
        out = {}
        for key, value in state.items():
            for pattern, repl in cls._PRETRAINED_NAMES:
                key = pattern.sub(repl, key, count=1)
            out[key] = value
        return out

    def frozen_modules(self) -> list[nn.Module]:
        return ([self.stem] if self.frozen_stages >= 0 else []) + list(self.stages[:max(self.frozen_stages, 0)])

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class FPN(nn.Module):
    """Feature pyramid (Lin et al. 2017) as mmdetection's ``FPN``: 1x1 laterals on the inputs from
    ``start_level``, nearest top-down sum, 3x3 outputs, then ``num_outs`` minus those levels of
    extras: stride-2 3x3 convs on the last input (``add_extra_convs='on_input'``), on its lateral
    (``'on_lateral'``) or on the last output (``'on_output'``), each later one on the previous
    extra; with ``add_extra_convs=False``, 1x1 max-pools of stride 2 (no weights)."""

    def __init__(self, *, in_channels, out_channels: int, num_outs: int, add_extra_convs="on_input",
                 relu_before_extra_convs: bool = False, start_level: int = 0, **unused):
        super().__init__()
        in_channels = list(in_channels)
        self.start_level = start_level
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_convs = nn.ModuleList()
        self.num_pooled = 0 if add_extra_convs else num_outs - len(in_channels)
        for i in range(num_outs - len(in_channels) if add_extra_convs else 0):
            src = in_channels[-1] if i == 0 and add_extra_convs == "on_input" else out_channels
            self.extra_convs.append(nn.Conv2d(src, out_channels, 3, stride=2, padding=1))
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_init(m)

    def forward(self, inputs) -> tuple[Tensor, ...]:
        inputs = inputs[self.start_level:]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        top_lateral = laterals[-1]                    # the top-down sum never changes the last one
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        for _ in range(self.num_pooled):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        first_source = {"on_input": inputs[-1], "on_lateral": top_lateral}
        for i, conv in enumerate(self.extra_convs):
            src = first_source.get(self.add_extra_convs, outs[-1]) if i == 0 else outs[-1]
            if i > 0 and self.relu_before_extra_convs:
                src = F.relu(src)
            outs.append(conv(src))
        return tuple(outs)


class RetinaHeadModule(nn.Module):
    """Shared-across-levels head: 4 stacked 3x3 conv + ReLU towers, then A*C and A*4 3x3 convs."""

    def __init__(self, *, in_channels: int, feat_channels: int = 256, stacked_convs: int = 4, num_base_priors: int,
                 cls_channels: int, prior_prob: float = 0.01):
        super().__init__()
        self.cls_channels = cls_channels

        def tower():
            layers, ch = [], in_channels
            for _ in range(stacked_convs):
                layers += [nn.Conv2d(ch, feat_channels, 3, padding=1), nn.ReLU(inplace=True)]
                ch = feat_channels
            return nn.Sequential(*layers)
        self.cls_convs, self.reg_convs = tower(), tower()
        self.retina_cls = nn.Conv2d(feat_channels, num_base_priors * cls_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, num_base_priors * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, std=0.01)
        nn.init.constant_(self.retina_cls.bias, bias_init_with_prob(prior_prob))

    def forward(self, feats) -> tuple[Tensor, Tensor]:
        cls = [self.retina_cls(self.cls_convs(f)) for f in feats]
        reg = [self.retina_reg(self.reg_convs(f)) for f in feats]
        return flatten_levels(cls, self.cls_channels), flatten_levels(reg, 4)
