"""Analytic cost of a spec: params, MACs (two conventions, see `cotsearch.arch.complexity`)
and activations, per stage and in total, without building the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cotsearch.arch.complexity import Complexity
from cotsearch.arch.plan import plan_network
from cotsearch.arch.spec import BackboneSpec


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

    @classmethod
    def from_dict(cls, data: dict) -> CostReport:
        """The inverse of to_dict (a search sends its trials their price this way)."""
        parts = [PartCost(**{**p, "out_shape": tuple(p["out_shape"])}) for p in data["stages"]]
        return cls(tuple(data["input_size"]), parts)

    def to_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "params": self.params, "macs": self.macs, "macs_conv": self.macs_conv, "acts": self.acts,
            "stages": [asdict(p) for p in self.parts],
        }


def as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def estimate_cost(spec: BackboneSpec, input_size: int | tuple[int, int] | None = None) -> CostReport:
    """Cost of one image at `input_size` (default: the spec's), per part: stem, layer1..N, head."""
    plan = plan_network(spec)
    h, w = as_hw(input_size or spec.input_size)
    report = CostReport((h, w))
    cx = Complexity(h, w)

    def record(name: str, before: Complexity, channels: int) -> None:
        report.parts.append(PartCost(name, **cx.minus(before), out_shape=(channels, cx.h, cx.w)))

    before = cx.copy()
    plan.stem.complexity(cx)
    record("stem", before, plan.stem.out_chs)
    for stage in plan.stages:
        before = cx.copy()
        for block in stage.blocks:
            block.complexity(cx)
        record(stage.name, before, stage.out_chs)
    before = cx.copy()
    cx.global_pool(plan.num_features)
    if plan.num_classes:
        cx.linear(plan.num_features, plan.num_classes)
    record("head", before, plan.num_classes or plan.num_features)
    return report


def analytic_profile(spec: BackboneSpec, input_size: int | None = None) -> dict:
    """The cost model's part of `cotsearch profile` (same keys; nothing measured)."""
    result = estimate_cost(spec, input_size).to_dict()
    result.update(name=spec.name, measured_macs_conv=None, device=None, batch_size=None, latency_ms=None)
    for part in result["stages"]:
        part.update(measured_macs_conv=None, latency_ms=None)
    return result
