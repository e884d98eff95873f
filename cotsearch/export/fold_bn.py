"""optimize_for_inference: fold each batch norm that directly follows a convolution into
that convolution (exact up to float rounding, eval mode only) and optionally switch to
channels_last.

Which conv feeds which BN is read from the modules, not guessed: every nn.Sequential's
(Conv2d, BatchNorm2d) neighbours, plus the pairs a module declares in `conv_bn_pairs()`
because its forward calls them back to back (Bottleneck, SEConv, the stem). The folding
itself is torch's `fuse_conv_bn_eval`; torch.fx's `fuse` would find the pairs by tracing,
but the CoT layers pick their aggregation at run time and do not trace symbolically.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module paths where the BN's only input is the conv's output."""
    pairs = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        candidates = []
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            candidates += [(a, b) for (a, _), (b, _) in zip(children, children[1:])]
        if hasattr(module, "conv_bn_pairs"):
            candidates += module.conv_bn_pairs()
        for conv, bn in candidates:
            if isinstance(submodule(model, prefix + conv), nn.Conv2d) and \
                    isinstance(submodule(model, prefix + bn), nn.BatchNorm2d):
                pairs.append((prefix + conv, prefix + bn))
    return pairs


def submodule(model: nn.Module, path: str) -> nn.Module | None:
    """model.get_submodule(path), or None where a block left that layer out."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def optimize_for_inference(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """A copy of `model` in eval mode with its conv -> BN pairs folded into single convs
    (the BNs become nn.Identity). Training it afterwards would not update any BN."""
    model = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(model):
        fused = fuse_conv_bn_eval(model.get_submodule(conv_name), model.get_submodule(bn_name))
        model.set_submodule(conv_name, fused)
        model.set_submodule(bn_name, nn.Identity())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
