"""The bottleneck block of every CoTNet-family stage, named as timm's ResNet (and so as the
official CoTNet): conv1/bn1, the middle layer conv2, conv3/bn3, downsample."""

from __future__ import annotations

import torch
from timm.layers import BlurPool2d, DropPath, SEModule
from torch import nn

from cotsearch.arch.plan import BlockPlan, ConvPlan, CoTPlan, MiddlePlan, SEConvPlan
from cotsearch.nn.layers import CoTLayer, CoXtLayer, SEConv


def make_shortcut(plan: BlockPlan) -> nn.Module | None:
    """None when the identity fits; conv: strided 1x1 + BN; avgpool: ResNet-D's 2x2 average
    pool, then a 1x1 + BN (indices as timm's, so .1 is the conv)."""
    if not plan.projects:
        return None
    in_chs, out_chs, stride = plan.in_chs, plan.out_chs, plan.stride
    conv = nn.Conv2d(in_chs, out_chs, 1, stride=stride if plan.shortcut == "conv" else 1, bias=False)
    if plan.shortcut == "conv":
        return nn.Sequential(conv, nn.BatchNorm2d(out_chs))
    pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, conv, nn.BatchNorm2d(out_chs))


def make_middle(plan: MiddlePlan) -> nn.Module:
    if isinstance(plan, CoTPlan):
        return CoTLayer(plan) if plan.groups == 1 else CoXtLayer(plan)
    if isinstance(plan, SEConvPlan):
        return SEConv(plan)
    return nn.Conv2d(plan.width, plan.width, 3, plan.stride, padding=1, groups=plan.groups, bias=False)


class Bottleneck(nn.Module):
    """A bottleneck block built from its plan (see cotsearch.arch.plan.BlockPlan)."""

    def __init__(self, plan: BlockPlan, act_layer: type[nn.Module]):
        super().__init__()
        width, out_chs = plan.width, plan.out_chs
        self.kind = plan.kind
        self.conv1 = nn.Conv2d(plan.in_chs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = act_layer(inplace=True)
        self.avd = nn.AvgPool2d(3, 2, padding=1) if plan.avd else None
        self.conv2 = make_middle(plan.middle)
        plain = isinstance(plan.middle, ConvPlan)
        self.bn2 = nn.BatchNorm2d(width) if plain else None
        self.act2 = act_layer(inplace=True) if plain else None
        self.aa = BlurPool2d(width, filt_size=3, stride=plan.stride) if plan.blur else None
        self.conv3 = nn.Conv2d(width, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.se = SEModule(out_chs, rd_channels=plan.se_chs, act_layer=act_layer) if plan.se_chs else None
        self.drop_path = DropPath(plan.drop_path) if plan.drop_path > 0 else None
        self.act3 = act_layer(inplace=True)
        self.downsample = make_shortcut(plan)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Convs whose output goes straight into a BN (for cotsearch.optimize_for_inference)."""
        return [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        if self.avd is not None:
            x = self.avd(x)
        x = self.conv2(x)
        if self.bn2 is not None:
            x = self.act2(self.bn2(x))
        if self.aa is not None:
            x = self.aa(x)
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        return self.act3(x + shortcut)
