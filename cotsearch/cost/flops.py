"""Measured FLOPs: run the built model under torch.utils.flop_counter.FlopCounterMode.

The CoT aggregation is pad / slice / multiply / add, which the counter ignores, so it would
silently count as zero. While counting, the aggregation therefore runs as the custom op
`cotsearch::local_aggregate`, whose FLOP formula (2 * k*k * C*H*W per image) is registered
with the counter. Outside counting the layer keeps calling the plain PyTorch function, which
torch.compile and the ONNX exporter see through.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from cotsearch.nn.layers import aggregation


@torch.library.custom_op("cotsearch::local_aggregate", mutates_args=())
def local_aggregate_op(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return aggregation.aggregate_shifted(values, attn, kernel_size)


@local_aggregate_op.register_fake
def _(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return values.new_empty(values.shape)


@register_flop_formula(torch.ops.cotsearch.local_aggregate)
def _aggregate_flops(values_shape, attn_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    return 2 * kernel_size * kernel_size * math.prod(values_shape)


def counted_aggregation():
    """Route the CoT aggregation through the custom op while the block runs."""
    return aggregation.use_aggregation(local_aggregate_op)


def measure_flops(model: torch.nn.Module, input_size: tuple[int, int], in_chans: int) -> tuple[int, dict[str, int]]:
    """FLOPs of one image through `model` (eval), total and per top-level child module.
    Multiply-adds count as 2 FLOPs, as torch's counter does: MACs = FLOPs / 2."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, depth=2)
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, *input_size, device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad(), counted_aggregation(), counter:
            model(x)
    finally:
        model.train(was_training)
    # Keys are "Global", "<ModelClass>", "<ModelClass>.<child>", ...
    prefix = type(model).__name__ + "."
    per_child = {name.removeprefix(prefix): sum(ops.values()) for name, ops in counter.get_flop_counts().items()
                 if name.startswith(prefix) and name.count(".") == 1}
    return counter.get_total_flops(), per_child
