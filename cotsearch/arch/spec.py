"""The backbone spec: a Pydantic description of one CoTNet-family network.

A spec is a handful of per-stage numbers (pycls' AnyNet style) plus the CoT settings of
each stage. `cotsearch.arch.plan` resolves it into the exact layers, which
`cotsearch.nn` builds and `cotsearch.cost` prices. Every default is filled in on
validation, so a dumped spec names every choice and means one network.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BlockKind = Literal["cot", "conv", "se_conv"]
Activation = Literal[
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "gelu_tanh",
    "silu", "swish", "mish", "hard_swish", "hard_mish", "tanh",
]


class StrictModel(BaseModel):
    """Unknown keys are errors, never silently ignored; values are not coerced
    across types (a string is not an int)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CoTSpec(StrictModel):
    """Settings of the CoT layers of one stage (ignored by its conv blocks)."""

    kernel_size: int = Field(
        3, ge=3, le=15,
        description="k of the kxk key conv and the kxk aggregation window; odd, at least 3 (a 1x1 window has no context)",
    )
    heads: int | None = Field(
        None, ge=1,
        description="number of distinct attention maps; channel c uses map c % heads "
        "(strided sharing). null: width // 8, as the official model",
    )
    key_groups: int | None = Field(
        None, ge=1, description="groups of the kxk key conv. null: 4 * cardinality (official: 4 for CoT, 8 for CoXt)"
    )
    attn_reduction: int = Field(2, ge=1, description="the attention embedding's hidden width is width // attn_reduction")
    fusion_reduction: int = Field(4, ge=1, description="the fusion's hidden width is max(2 * width // fusion_reduction, 32)")

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"must be odd (the window is centred on each pixel), got {k}")
        return k


class StemSpec(StrictModel):
    """classic: 7x7 stride-2 conv (ResNet). deep: three 3x3 convs, the first strided, the
    last doubling the width (ResNet-D; output 2 * width). small: one 3x3 stride-1 conv,
    for 28-32 px images."""

    type: Literal["classic", "deep", "small"] = "classic"
    width: int = Field(64, ge=1, le=4096, description="output channels (deep: width of the first two convs)")
    pool: bool | None = Field(None, description="3x3 stride-2 max pool after the stem. null: yes for classic and deep, no for small")

    @model_validator(mode="after")
    def _resolve_pool(self) -> StemSpec:
        if self.pool is None:
            self.pool = self.type != "small"
        return self

    @property
    def out_chs(self) -> int:
        return 2 * self.width if self.type == "deep" else self.width

    @property
    def stride(self) -> int:
        return (1 if self.type == "small" else 2) * (2 if self.pool else 1)


class StageSpec(StrictModel):
    depth: int = Field(ge=1, le=64, description="number of bottleneck blocks")
    planes: int = Field(ge=1, le=8192, description="bottleneck planes; the stage outputs planes * expansion channels")
    stride: Literal[1, 2] = 1
    cardinality: int = Field(1, ge=1, le=64, description="groups of the middle layer: 1 = CoT, 2 = CoXt (CoTNeXt)")
    base_width: int = Field(64, ge=1, le=4096)
    blocks: BlockKind | list[BlockKind] = Field(
        "cot",
        description="the middle layer of every block: one kind for all, or a pattern repeated "
        "over the blocks ([cot, se_conv] alternates, as SE-CoTNetD's third stage)",
    )
    cot: CoTSpec = Field(default_factory=CoTSpec)

    @field_validator("stride", mode="before")
    @classmethod
    def _stride_not_bool(cls, stride):
        if isinstance(stride, bool):  # Python's True == 1 would pass as a stride
            raise ValueError(f"expected 1 or 2, got {stride}")
        return stride

    @field_validator("blocks")
    @classmethod
    def _non_empty_pattern(cls, blocks):
        if isinstance(blocks, list) and not blocks:
            raise ValueError("the pattern is empty: give at least one of cot, conv, se_conv")
        return blocks

    @property
    def width(self) -> int:
        """Width of the middle layer, as timm's ResNet computes it."""
        return (self.planes * self.base_width // 64) * self.cardinality

    @property
    def block_kinds(self) -> list[str]:
        pattern = [self.blocks] if isinstance(self.blocks, str) else self.blocks
        return [pattern[i % len(pattern)] for i in range(self.depth)]

    @property
    def cot_heads(self) -> int:
        return self.cot.heads if self.cot.heads is not None else self.width // 8

    @property
    def cot_key_groups(self) -> int:
        return self.cot.key_groups if self.cot.key_groups is not None else 4 * self.cardinality

    @model_validator(mode="after")
    def _consistent_widths(self) -> StageSpec:
        width, card = self.width, self.cardinality
        if width < 1:
            raise ValueError(f"planes * base_width // 64 is 0: planes {self.planes} with base_width {self.base_width} gives no channels")
        kinds = set(self.block_kinds)
        if card > 1 and width % card:
            raise ValueError(f"cardinality {card} must divide the width {width}")
        if "cot" in kinds:
            heads, key_groups = self.cot_heads, self.cot_key_groups
            if heads < 1:
                raise ValueError(f"cot.heads: width {width} // 8 is 0; set cot.heads explicitly or widen the stage")
            if width % heads:
                raise ValueError(f"cot.heads {heads} must divide the width {width}")
            if heads % card:
                raise ValueError(f"cot.heads {heads} must be a multiple of cardinality {card}")
            if width % key_groups:
                raise ValueError(f"cot.key_groups {key_groups} must divide the width {width}")
            hidden = width // self.cot.attn_reduction
            if hidden < 1 or hidden % card:
                raise ValueError(
                    f"cot.attn_reduction {self.cot.attn_reduction}: width {width} // it is {hidden}, "
                    f"which must be at least 1 and a multiple of cardinality {card}"
                )
        return self


class BackboneSpec(StrictModel):
    """A CoTNet-family backbone: a stem, bottleneck stages and a classifier."""

    name: str | None = Field(None, max_length=200)
    in_chans: int = Field(3, ge=1, le=64)
    num_classes: int = Field(1000, ge=0, le=1_000_000, description="0: no classifier (features only)")
    input_size: int = Field(224, ge=8, le=4096, description="default square input size in pixels")
    stem: StemSpec = Field(default_factory=StemSpec)
    stages: list[StageSpec] = Field(min_length=1, max_length=8)
    expansion: int = Field(4, ge=1, le=16, description="stage output channels = planes * expansion")
    shortcut: Literal["conv", "avgpool"] = Field(
        "conv", description="projection shortcut: conv = strided 1x1 conv; avgpool = 2x2 average pool then 1x1 conv (ResNet-D)"
    )
    stride_mode: Literal["avgpool", "blurpool"] = Field(
        "avgpool",
        description="how a strided block strides: avgpool = 3x3 average pool before a CoT layer, "
        "strided conv otherwise; blurpool = middle layer at stride 1, then a binomial blur pool",
    )
    se_ratio: float = Field(0.0, ge=0.0, le=1.0, description="SE module after every block (SE-ResNet); 0 = none, 0.0625 = SE-ResNet's 1/16")
    act: Activation = Field("relu", description="activation of the stem and the bottlenecks")
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0, description="stochastic depth, growing linearly to this rate at the last block")
    zero_init_last: bool = Field(True, description="zero-initialise the last BN of every block")

    def feature_sizes(self, input_size: int | None = None) -> list[int]:
        """Side of the feature map after the stem and after each stage (strides round up)."""
        sizes = [-(-(input_size or self.input_size) // self.stem.stride)]
        for stage in self.stages:
            sizes.append(-(-sizes[-1] // stage.stride))
        return sizes

    @model_validator(mode="after")
    def _feature_maps_exist(self) -> BackboneSpec:
        sizes = self.feature_sizes()
        for i, stage in enumerate(self.stages):
            if stage.stride > 1 and self.stride_mode == "blurpool" and sizes[i] < 2:
                raise ValueError(
                    f"stages.{i}: the feature map is 1 px at input_size {self.input_size}; "
                    "blurpool cannot stride it (use a larger input_size or stride_mode avgpool)"
                )
        return self

    @property
    def num_features(self) -> int:
        return self.stages[-1].planes * self.expansion

    def to_yaml(self) -> str:
        """Every field written out, defaults included: the file alone fixes the network."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def spec_hash(self) -> str:
        """Short content hash of the network (its name excluded), the same however the spec
        writes it: patterns are hashed block by block, defaults (heads, key groups) resolved,
        CoT settings of stages without CoT left out, -0.0 read as 0.0."""
        data = self.model_dump(mode="json", exclude={"name"})
        for written, stage in zip(data["stages"], self.stages):
            written["blocks"] = stage.block_kinds
            written["cot"] = ({**written["cot"], "heads": stage.cot_heads, "key_groups": stage.cot_key_groups}
                              if "cot" in stage.block_kinds else None)
        return hashlib.sha256(json.dumps(_without_negative_zero(data), sort_keys=True).encode()).hexdigest()[:12]


def _without_negative_zero(value):
    if isinstance(value, float):
        return value + 0.0  # -0.0 + 0.0 is 0.0
    if isinstance(value, dict):
        return {k: _without_negative_zero(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_negative_zero(v) for v in value]
    return value
