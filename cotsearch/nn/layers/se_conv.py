"""SE-CoTNetD's "SE conv": a 3x3 conv followed by a split-attention gate of radix 1
(which is a squeeze-excitation with a BN in its bottleneck and SiLU activations)."""

from __future__ import annotations

import torch
from torch import nn

from cotsearch.arch.plan import SEConvPlan


class SEConv(nn.Module):
    """conv 3x3 -> BN -> SiLU, gated by sigmoid(fc2(SiLU(BN(fc1(mean))))). Module names
    follow the official `SplitAttnConv2d`: conv, bn0, fc1, bn1, fc2."""

    def __init__(self, plan: SEConvPlan):
        super().__init__()
        channels, stride, groups, attn_chs = plan.channels, plan.stride, plan.groups, plan.attn_chs
        self.conv = nn.Conv2d(channels, channels, 3, stride, padding=1, groups=groups, bias=False)
        self.bn0 = nn.BatchNorm2d(channels)
        self.act0 = nn.SiLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, attn_chs, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(attn_chs)
        self.act1 = nn.SiLU(inplace=True)
        self.fc2 = nn.Conv2d(attn_chs, channels, 1, groups=groups)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Convs whose output goes straight into a BN (for cotsearch.optimize_for_inference)."""
        return [("conv", "bn0"), ("fc1", "bn1")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.bn0(self.conv(x)))
        gate = self.act1(self.bn1(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(self.fc2(gate))
