"""Analytic cost of a spec: params, MACs (two conventions, see `cotsearch.complexity`)
and activations, per stage and in total, without building the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cotsearch.blocks import Bottleneck
from cotsearch.complexity import Complexity
from cotsearch.model import block_args, stem_complexity
from cotsearch.spec import BackboneSpec
from cotsearch.spec_io import load_spec


@dataclass
class PartCost:
    name: str
    params: int
    macs: int
    macs_conv: int
    acts: int
    out_shape: tuple[int, int, int]  # channels, height, width


@dataclass
class CostReport:
    input_size: tuple[int, int]
    parts: list[PartCost] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(getattr(p, key) for p in self.parts)

    @property
    def params(self) -> int:
        return self.total("params")

    @property
    def macs(self) -> int:
        return self.total("macs")

    @property
    def macs_conv(self) -> int:
        return self.total("macs_conv")

    @property
    def acts(self) -> int:
        return self.total("acts")

    def to_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "params": self.params, "macs": self.macs, "macs_conv": self.macs_conv, "acts": self.acts,
            "stages": [asdict(p) for p in self.parts],
        }


def as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def estimate_cost(spec: BackboneSpec | str, input_size: int | tuple[int, int] | None = None) -> CostReport:
    """Cost of one image at `input_size` (default: the spec's), per part: stem, layer1..N, head."""
    spec = spec if isinstance(spec, BackboneSpec) else load_spec(spec)
    h, w = as_hw(input_size or spec.input_size)
    report = CostReport((h, w))
    cx = Complexity(h, w)

    def record(name: str, before: Complexity, channels: int) -> None:
        report.parts.append(PartCost(name, **cx.minus(before), out_shape=(channels, cx.h, cx.w)))

    before = cx.copy()
    stem_complexity(cx, spec.stem, spec.in_chans)
    record("stem", before, spec.stem.out_chs)
    for i, blocks in enumerate(block_args(spec)):
        before = cx.copy()
        for args in blocks:
            Bottleneck.complexity(cx, *args)
        record(f"layer{i + 1}", before, blocks[-1][1])
    before = cx.copy()
    cx.global_pool(spec.num_features)
    if spec.num_classes:
        cx.linear(spec.num_features, spec.num_classes)
    record("head", before, spec.num_classes or spec.num_features)
    return report
