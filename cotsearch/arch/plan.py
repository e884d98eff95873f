"""The plan of a network: a spec resolved into the exact layers to build, as frozen
dataclasses, without torch.

A spec says what a user chose (a stage's depth, its block pattern, "heads: null"); the plan
says what every block is (its channels, stride, middle layer, SE width, drop-path rate), with
every default resolved once, here. The builder (`cotsearch.nn`) turns each plan into modules
and the cost model (`cotsearch.cost.analytic`) prices the same plans, each through the
`complexity` method beside its fields (pycls' style), so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotsearch.arch.complexity import Complexity
from cotsearch.arch.spec import BackboneSpec


def make_divisible(value: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """timm's channel rounding (`timm.layers.make_divisible`), here so that planning needs no
    torch: the nearest multiple of `divisor`, at least `divisor`, bumped up when rounding
    down would lose more than 1 - round_limit of the value."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < round_limit * value else new


@dataclass(frozen=True)
class StemPlan:
    """classic: 7x7 stride-2 conv. small: one 3x3 conv. deep (ResNet-D): three 3x3 convs,
    the first strided, the last doubling the width. Then BN, activation and an optional
    3x3 stride-2 max pool (the model's bn1 / act1 / maxpool)."""

    type: str
    in_chans: int
    width: int
    pool: bool

    @property
    def out_chs(self) -> int:
        return 2 * self.width if self.type == "deep" else self.width

    @property
    def reduction(self) -> int:
        """Stride of the stem's convolutions (before the max pool)."""
        return 1 if self.type == "small" else 2

    def complexity(self, cx: Complexity) -> Complexity:
        w = self.width
        if self.type == "classic":
            cx.conv(self.in_chans, w, 7, stride=2)
        elif self.type == "small":
            cx.conv(self.in_chans, w, 3)
        else:
            cx.conv(self.in_chans, w, 3, 2).norm(w).act(w).conv(w, w, 3).norm(w).act(w).conv(w, 2 * w, 3)
        cx.norm(self.out_chs).act(self.out_chs)
        return cx.pool(self.out_chs, 3, 2, pad=1) if self.pool else cx


@dataclass(frozen=True)
class ConvPlan:
    """ResNet's middle layer: a 3x3 conv, BN, activation."""

    width: int
    stride: int = 1
    groups: int = 1

    def complexity(self, cx: Complexity) -> Complexity:
        return cx.conv(self.width, self.width, 3, self.stride, groups=self.groups).norm(self.width).act(self.width)


@dataclass(frozen=True)
class SEConvPlan:
    """SE-CoTNetD's "SE conv": a 3x3 conv, BN, SiLU, gated by a split-attention gate of
    radix 1 (a squeeze-excitation with a BN in its bottleneck)."""

    channels: int
    stride: int = 1
    groups: int = 1
    reduction: int = 4
    min_chs: int = 32

    @property
    def attn_chs(self) -> int:
        chs = max(self.channels // self.reduction, self.min_chs)
        return chs + (-chs % self.groups)  # a grouped 1x1 needs a multiple of groups

    def complexity(self, cx: Complexity) -> Complexity:
        c, a, g = self.channels, self.attn_chs, self.groups
        cx.conv(c, c, 3, self.stride, g).norm(c).act(c)
        gate = cx.branch()  # the gate's MLP runs on the pooled 1x1 map
        gate.h = gate.w = 1
        gate.conv(c, a, 1, groups=g, bias=True).norm(a).act(a)
        gate.conv(a, c, 1, groups=g, bias=True).act(c)  # fc2, sigmoid
        return cx.add(gate)


@dataclass(frozen=True)
class CoTPlan:
    """A CoT layer (groups 1) or CoTNeXt's CoXt layer (groups > 1); see cotsearch.nn.layers.cot."""

    dim: int
    kernel_size: int
    heads: int
    key_groups: int
    attn_reduction: int = 2
    fusion_reduction: int = 4
    groups: int = 1

    @property
    def taps(self) -> int:
        return self.kernel_size * self.kernel_size

    @property
    def hidden(self) -> int:
        """Width of the attention embedding's bottleneck."""
        return self.dim // self.attn_reduction

    @property
    def fusion_chs(self) -> int:
        return max(self.dim * 2 // self.fusion_reduction, 32)

    def complexity(self, cx: Complexity) -> Complexity:
        dim, hidden, maps, g = self.dim, self.hidden, self.taps * self.heads, self.groups
        cx.conv(dim, dim, self.kernel_size, groups=self.key_groups).norm(dim).act(dim)  # key_embed
        cx.conv(2 * dim, hidden, 1, groups=g).norm(hidden).act(hidden)  # embed
        cx.conv(hidden, maps, 1, groups=g, bias=True).norm(maps, counted=False)
        cx.conv(dim, dim, 1, groups=g).norm(dim)  # conv1x1 (values)
        cx.aggregate(dim, self.kernel_size).norm(dim).act(dim)  # aggregation, bn, SiLU
        fusion = cx.branch()  # the fusion's MLP runs on the pooled 1x1 map
        fusion.h = fusion.w = 1
        f = self.fusion_chs
        fusion.conv(dim, f, 1, bias=True).norm(f).act(f).conv(f, 2 * dim, 1, bias=True)
        return cx.add(fusion)


MiddlePlan = CoTPlan | ConvPlan | SEConvPlan


@dataclass(frozen=True)
class BlockPlan:
    """A bottleneck: 1x1 reduce -> middle layer -> 1x1 expand (-> SE) -> + shortcut.

    Striding, as the official models: with stride_mode "avgpool" a CoT layer is preceded by
    a 3x3 average pool (`avd`) and a conv strides itself; with "blurpool" the middle layer
    runs at stride 1 and a binomial blur pool follows it."""

    in_chs: int
    out_chs: int
    width: int
    stride: int
    middle: MiddlePlan
    shortcut: str  # "conv" or "avgpool" (ResNet-D); used only when projecting
    blur: bool
    se_chs: int  # hidden width of the SE module after the block; 0: none
    drop_path: float

    @property
    def kind(self) -> str:
        return {CoTPlan: "cot", ConvPlan: "conv", SEConvPlan: "se_conv"}[type(self.middle)]

    @property
    def avd(self) -> bool:
        """A 3x3 stride-2 average pool before a strided CoT layer (which runs at stride 1)."""
        return self.stride > 1 and self.kind == "cot" and not self.blur

    @property
    def projects(self) -> bool:
        """The shortcut needs a projection (the identity does not fit)."""
        return self.stride > 1 or self.in_chs != self.out_chs

    def complexity(self, cx: Complexity) -> Complexity:
        residual = cx.branch()
        if self.projects:
            if self.shortcut == "avgpool" and self.stride > 1:
                residual.pool(self.in_chs, 2, self.stride, ceil_mode=True)
            residual.conv(self.in_chs, self.out_chs, 1, self.stride if self.shortcut == "conv" else 1).norm(self.out_chs)
        cx.conv(self.in_chs, self.width, 1).norm(self.width).act(self.width)
        if self.avd:
            cx.pool(self.width, 3, 2, pad=1)
        self.middle.complexity(cx)
        if self.blur:
            cx.blur(self.width, self.stride)
        cx.conv(self.width, self.out_chs, 1).norm(self.out_chs)
        if self.se_chs:  # timm's SEModule on the pooled map: fc1, act, fc2, sigmoid
            gate = cx.branch()
            gate.h = gate.w = 1
            cx.add(gate.conv(self.out_chs, self.se_chs, 1, bias=True).act(self.se_chs)
                   .conv(self.se_chs, self.out_chs, 1, bias=True).act(self.out_chs))
        cx.add(residual)
        return cx.act(self.out_chs)  # act3


@dataclass(frozen=True)
class StagePlan:
    name: str  # layer1, layer2, ... (timm's ResNet names)
    blocks: tuple[BlockPlan, ...]
    reduction: int  # total stride of the network at the stage's output

    @property
    def out_chs(self) -> int:
        return self.blocks[-1].out_chs


@dataclass(frozen=True)
class NetworkPlan:
    stem: StemPlan
    stages: tuple[StagePlan, ...]
    act: str
    num_classes: int
    drop_rate: float

    @property
    def num_features(self) -> int:
        return self.stages[-1].out_chs

    @property
    def blocks(self) -> list[BlockPlan]:
        return [block for stage in self.stages for block in stage.blocks]


def middle_plan(spec: BackboneSpec, stage_index: int, kind: str, stride: int) -> MiddlePlan:
    stage = spec.stages[stage_index]
    conv_stride = 1 if spec.stride_mode == "blurpool" else stride
    if kind == "cot":
        cot = stage.cot
        return CoTPlan(stage.width, cot.kernel_size, stage.cot_heads, stage.cot_key_groups, cot.attn_reduction,
                       cot.fusion_reduction, stage.cardinality)
    if kind == "se_conv":
        return SEConvPlan(stage.width, conv_stride, stage.cardinality)
    return ConvPlan(stage.width, conv_stride, stage.cardinality)


def plan_network(spec: BackboneSpec) -> NetworkPlan:
    """Every block of the spec, each value derived once."""
    stem = StemPlan(spec.stem.type, spec.in_chans, spec.stem.width, spec.stem.pool)
    num_blocks = sum(s.depth for s in spec.stages)
    in_chs, index, reduction = stem.out_chs, 0, spec.stem.stride
    stages = []
    for i, stage in enumerate(spec.stages):
        out_chs = stage.planes * spec.expansion
        se_chs = make_divisible(out_chs * spec.se_ratio, 8, round_limit=0.0) if spec.se_ratio > 0 else 0
        blocks = []
        for j, kind in enumerate(stage.block_kinds):
            stride = stage.stride if j == 0 else 1
            blocks.append(BlockPlan(
                in_chs=in_chs, out_chs=out_chs, width=stage.width, stride=stride,
                middle=middle_plan(spec, i, kind, stride), shortcut=spec.shortcut,
                blur=stride > 1 and spec.stride_mode == "blurpool", se_chs=se_chs,
                # Stochastic depth grows linearly with depth, as in timm's ResNet.
                drop_path=spec.drop_path_rate * index / max(num_blocks - 1, 1),
            ))
            in_chs, index = out_chs, index + 1
        reduction *= stage.stride
        stages.append(StagePlan(f"layer{i + 1}", tuple(blocks), reduction))
    return NetworkPlan(stem, tuple(stages), spec.act, spec.num_classes, spec.drop_rate)
