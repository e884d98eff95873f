"""Analytic cost of layers from shapes alone (pycls' `complexity` style).

Each layer description of the network plan (cotsearch.arch.plan) has a `complexity(cx)`
beside its fields, walking this accumulator through the layers that the builder makes of
the same description, so the cost model cannot drift from the model. Counts are for one
image.

Two MAC conventions:
- `macs`: the paper's, i.e. the ptflops-style counter of the official code: conv and linear
  multiply-adds plus one add per output element of a bias, batch norm 2 per element, ReLU /
  SiLU / sigmoid 1 per element, pooling 1 per input element, and the CoT aggregation
  k*k*C*H*W. GroupNorm, softmax, the fusion's products and sums are not counted.
- `macs_conv`: conv and linear multiply-adds plus the aggregation only (what
  torch.utils.flop_counter measures, halved).
`acts`: elements of every conv, linear, pool and aggregation output (as pycls counts them).
"""

from __future__ import annotations

from dataclasses import dataclass


def _out_size(size: int, k: int, stride: int, pad: int, ceil_mode: bool = False) -> int:
    span = size + 2 * pad - k
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # PyTorch drops a last window that would start in the padding
    return out


@dataclass
class Complexity:
    """Running totals while walking a network, plus the current feature map size."""

    h: int
    w: int
    params: int = 0
    macs: int = 0
    macs_conv: int = 0
    acts: int = 0

    @property
    def area(self) -> int:
        return self.h * self.w

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False) -> Complexity:
        self.h, self.w = _out_size(self.h, k, stride, k // 2), _out_size(self.w, k, stride, k // 2)
        mults = k * k * (cin // groups) * cout * self.area
        self.macs_conv += mults
        self.macs += mults + (cout * self.area if bias else 0)
        self.params += k * k * (cin // groups) * cout + (cout if bias else 0)
        self.acts += cout * self.area
        return self

    def linear(self, cin: int, cout: int, bias: bool = True) -> Complexity:
        self.macs_conv += cin * cout
        self.macs += cin * cout + (cout if bias else 0)
        self.params += cin * cout + (cout if bias else 0)
        self.acts += cout
        return self

    def norm(self, c: int, counted: bool = True) -> Complexity:
        """Batch norm (2 MACs per element, affine) or GroupNorm (counted=False): 2c params."""
        self.params += 2 * c
        if counted:
            self.macs += 2 * c * self.area
        return self

    def act(self, c: int) -> Complexity:
        self.macs += c * self.area
        return self

    def pool(self, c: int, k: int, stride: int, pad: int = 0, ceil_mode: bool = False) -> Complexity:
        self.macs += c * self.area  # one per input element
        self.h, self.w = _out_size(self.h, k, stride, pad, ceil_mode), _out_size(self.w, k, stride, pad, ceil_mode)
        self.acts += c * self.area
        return self

    def global_pool(self, c: int) -> Complexity:
        self.macs += c * self.area
        self.h = self.w = 1
        self.acts += c
        return self

    def aggregate(self, c: int, k: int) -> Complexity:
        """The CoT local aggregation: k*k multiply-adds per output element."""
        self.macs += k * k * c * self.area
        self.macs_conv += k * k * c * self.area
        self.acts += c * self.area
        return self

    def blur(self, c: int, stride: int, k: int = 3) -> Complexity:
        """timm's BlurPool2d: a fixed depthwise kxk conv (no parameters). ptflops does not
        know the module, so it is not in `macs`; its conv is in `macs_conv`."""
        self.h, self.w = _out_size(self.h, k, stride, k // 2), _out_size(self.w, k, stride, k // 2)
        self.macs_conv += k * k * c * self.area
        self.acts += c * self.area
        return self

    def branch(self) -> Complexity:
        """A fresh accumulator at the current feature map size (for a parallel path)."""
        return Complexity(self.h, self.w)

    def add(self, other: Complexity) -> Complexity:
        for key in ("params", "macs", "macs_conv", "acts"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        return self

    def copy(self) -> Complexity:
        return Complexity(self.h, self.w, self.params, self.macs, self.macs_conv, self.acts)

    def minus(self, before: Complexity) -> dict[str, int]:
        """What was added since `before` (a snapshot), as a plain dict."""
        return {key: getattr(self, key) - getattr(before, key) for key in ("params", "macs", "macs_conv", "acts")}

