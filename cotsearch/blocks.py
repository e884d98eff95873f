"""The bottleneck block of every CoTNet-family stage, named as timm's ResNet (and so as the
official CoTNet): conv1/bn1, the middle layer conv2, conv3/bn3, downsample."""

from __future__ import annotations

import torch
from timm.layers import BlurPool2d, DropPath, SEModule, make_divisible
from torch import nn

from cotsearch.complexity import Complexity
from cotsearch.layers import CoTLayer, CoXtLayer, SEConv
from cotsearch.spec import CoTSpec


def make_shortcut(in_chs: int, out_chs: int, stride: int, kind: str) -> nn.Module | None:
    """None when the identity fits; conv: strided 1x1 + BN; avgpool: ResNet-D's 2x2 average
    pool, then a 1x1 + BN (indices as timm's, so .1 is the conv)."""
    if stride == 1 and in_chs == out_chs:
        return None
    conv = nn.Conv2d(in_chs, out_chs, 1, stride=stride if kind == "conv" else 1, bias=False)
    if kind == "conv":
        return nn.Sequential(conv, nn.BatchNorm2d(out_chs))
    pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, conv, nn.BatchNorm2d(out_chs))


def shortcut_complexity(cx: Complexity, in_chs: int, out_chs: int, stride: int, kind: str) -> Complexity:
    if stride == 1 and in_chs == out_chs:
        return cx
    if kind == "avgpool" and stride > 1:
        cx.pool(in_chs, 2, stride, ceil_mode=True)
    return cx.conv(in_chs, out_chs, 1, stride if kind == "conv" else 1).norm(out_chs)


def cot_layer_args(width: int, cardinality: int, cot: CoTSpec, heads: int, key_groups: int):
    layer_cls = CoTLayer if cardinality == 1 else CoXtLayer
    return layer_cls, (width, cot.kernel_size, heads, key_groups, cot.attn_reduction, cot.fusion_reduction, cardinality)


class Bottleneck(nn.Module):
    """1x1 reduce -> middle layer (CoT, plain 3x3 conv, or SE conv) -> 1x1 expand -> + shortcut.

    Striding, as the official models: with stride_mode "avgpool" a CoT layer is preceded by a
    3x3 average pool (`avd`) and a conv strides itself; with "blurpool" the middle layer runs
    at stride 1 and a binomial blur pool (`aa`) follows it.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        width: int,
        kind: str,
        stride: int,
        cardinality: int,
        cot: CoTSpec,
        cot_heads: int,
        cot_key_groups: int,
        shortcut: str,
        stride_mode: str,
        act_layer: type[nn.Module],
        se_ratio: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.kind = kind
        self.conv1 = nn.Conv2d(in_chs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = act_layer(inplace=True)

        blur = stride > 1 and stride_mode == "blurpool"
        self.avd = nn.AvgPool2d(3, 2, padding=1) if stride > 1 and kind == "cot" and not blur else None
        conv_stride = stride if kind != "cot" and not blur else 1
        self.bn2 = self.act2 = None
        if kind == "cot":
            layer_cls, args = cot_layer_args(width, cardinality, cot, cot_heads, cot_key_groups)
            self.conv2 = layer_cls(*args)
        elif kind == "se_conv":
            self.conv2 = SEConv(width, conv_stride, groups=cardinality)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, conv_stride, padding=1, groups=cardinality, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.act2 = act_layer(inplace=True)
        self.aa = BlurPool2d(width, filt_size=3, stride=stride) if blur else None

        self.conv3 = nn.Conv2d(width, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.se = SEModule(out_chs, rd_ratio=se_ratio, act_layer=act_layer) if se_ratio > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None
        self.act3 = act_layer(inplace=True)
        self.downsample = make_shortcut(in_chs, out_chs, stride, shortcut)

    @staticmethod
    def complexity(cx: Complexity, in_chs: int, out_chs: int, width: int, kind: str, stride: int, cardinality: int,
                   cot: CoTSpec, cot_heads: int, cot_key_groups: int, shortcut: str, stride_mode: str,
                   act_layer=None, se_ratio: float = 0.0, drop_path: float = 0.0) -> Complexity:
        residual = shortcut_complexity(cx.branch(), in_chs, out_chs, stride, shortcut)
        cx.conv(in_chs, width, 1).norm(width).act(width)
        blur = stride > 1 and stride_mode == "blurpool"
        if stride > 1 and kind == "cot" and not blur:
            cx.pool(width, 3, 2, pad=1)
        conv_stride = stride if kind != "cot" and not blur else 1
        if kind == "cot":
            layer_cls, args = cot_layer_args(width, cardinality, cot, cot_heads, cot_key_groups)
            layer_cls.complexity(cx, *args)
        elif kind == "se_conv":
            SEConv.complexity(cx, width, conv_stride, groups=cardinality)
        else:
            cx.conv(width, width, 3, conv_stride, groups=cardinality).norm(width).act(width)
        if blur:
            cx.blur(width, stride)
        cx.conv(width, out_chs, 1).norm(out_chs)
        if se_ratio > 0:  # timm's SEModule on the pooled map: fc1, act, fc2, sigmoid
            rd = make_divisible(out_chs * se_ratio, 8, round_limit=0.0)
            gate = cx.branch()
            gate.h = gate.w = 1
            cx.add(gate.conv(out_chs, rd, 1, bias=True).act(rd).conv(rd, out_chs, 1, bias=True).act(out_chs))
        cx.add(residual)
        return cx.act(out_chs)  # act3

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
