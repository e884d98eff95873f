"""The CoT local aggregation: each value channel summed over a kxk window, weighted by
one of a few shared attention maps.

Channel c uses map c % heads (the official kernel's strided sharing). No library has
this op; the official one is a CuPy kernel, CUDA only. This version accumulates the k*k
shifted products instead of unfolding, so it never materialises a k*k-times larger
tensor, and it is built from pad, slice, multiply and add only (ONNX-exportable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def local_aggregate(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The aggregation the layers call: `local_aggregate_impl`, which cotsearch.flops swaps
    for a FLOP-counted custom op while it measures."""
    return local_aggregate_impl(values, attn, kernel_size)


def local_aggregate_eager(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """values (N, C, H, W), attn (N, heads, k*k, H, W) with heads dividing C -> (N, C, H, W).

    out[n, c, h, w] = sum_{i,j} attn[n, c % heads, i*k + j, h, w] * values[n, c, h+i-k//2, w+j-k//2],
    zero outside the image.
    """
    n, c, h, w = values.shape
    heads = attn.shape[1]
    pad = kernel_size // 2
    padded = F.pad(values, (pad, pad, pad, pad))
    # (N, C/heads, heads, ...): channel r*heads + m sits at [r, m], so map m broadcasts over r.
    padded = padded.reshape(n, c // heads, heads, h + 2 * pad, w + 2 * pad)
    attn = attn.to(values.dtype)
    out = None
    for tap in range(kernel_size * kernel_size):
        i, j = divmod(tap, kernel_size)
        term = padded[..., i : i + h, j : j + w] * attn[:, None, :, tap]
        out = term if out is None else out + term
    return out.reshape(n, c, h, w)


local_aggregate_impl = local_aggregate_eager


def local_aggregate_unfold(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The plain reference: unfold the values (k*k times the memory), multiply, sum."""
    n, c, h, w = values.shape
    heads = attn.shape[1]
    cols = F.unfold(values, kernel_size, padding=kernel_size // 2)
    cols = cols.view(n, c // heads, heads, kernel_size * kernel_size, h, w)
    return (cols * attn.to(values.dtype).unsqueeze(1)).sum(dim=3).view(n, c, h, w)
