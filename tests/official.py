"""Helpers to compare cotsearch with the official CoTNet code without that code: its
state_dict layouts and reference outputs (tests/data), the fill rule that produced them,
and a line-by-line port of the official CoT / CoXt forward passes."""

from __future__ import annotations

import json
import math
import zlib
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

DATA = Path(__file__).parent / "data"
VARIANTS = ["cotnet50", "cotnext50_2x48d", "se_cotnetd_50", "cotnet101",
            "cotnext101_2x48d", "se_cotnetd_101", "se_cotnetd_152"]


@cache
def official_layouts() -> dict:
    return json.loads((DATA / "official_state_dicts.json").read_text())


@cache
def official_outputs() -> dict[str, torch.Tensor]:
    return load_file(DATA / "official_outputs.safetensors")


def fill_value(key: str, shape: list[int]) -> torch.Tensor:
    """The official-vectors fill rule: each entry a function of its key and shape."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.long)
    if key.endswith("running_var"):
        return 1.0 + torch.rand(shape, generator=g)
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        return (1.0 if key.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) * math.sqrt(1.0 / math.prod(shape[1:]))


def fill_official(variant: str) -> dict[str, torch.Tensor]:
    """An official state_dict of `variant`, in the official key order, filled by the rule."""
    return {key: fill_value(key, shape) for key, shape in official_layouts()[variant]["state_dict"]}


def _local_conv_unfold(x: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """The official LocalConvolution as the vectors' README describes it: unfold, then
    channel c times attention map c % (C / 8), summed over the k*k taps."""
    b, c, h, wd = x.shape
    maps = w.shape[2]
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(b, c // maps, maps, k * k, h, wd)
    return (cols * w.view(b, 1, maps, k * k, h, wd)).sum(dim=3).view(b, c, h, wd)


def official_cot_forward(layer, x: torch.Tensor) -> torch.Tensor:
    """models/cotnet.py CoTLayer.forward / CoXtLayer.forward, ported line by line."""
    k = layer.key_embed(x)
    if layer.groups == 1:
        qk = torch.cat([x, k], dim=1)
    else:
        qk = torch.stack([x, k], dim=2).view(x.size(0), -1, x.size(2), x.size(3))
    b, _, hh, ww = qk.size()
    ks = layer.kernel_size
    w = layer.embed(qk)
    g = layer.groups
    w = w.view(b * g, 1, -1, ks * ks, hh, ww)
    x = layer.conv1x1(x)
    x = x.view(b * g, -1, hh, ww)
    x = _local_conv_unfold(x, w, ks)
    x = x.view(b, -1, hh, ww)
    x = layer.act(layer.bn(x))
    B, C, H, W = x.shape
    x = torch.cat([x.view(B, C, 1, H, W), k.view(B, C, 1, H, W)], dim=2)
    x_gap = x.sum(dim=2).mean((2, 3), keepdim=True)
    x_attn = F.softmax(layer.se(x_gap).view(B, C, 2), dim=2)
    return (x * x_attn.reshape(B, C, 2, 1, 1)).sum(dim=2).contiguous()
