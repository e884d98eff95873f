"""The CoT and CoXt layers of CoTNet (arXiv 2107.12292), laid out as the official code
so that its checkpoints load by name: `key_embed`, `embed`, `conv1x1`, `bn`, `se`."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from timm.models import register_notrace_module
from torch import nn

from cotsearch.arch.plan import CoTPlan
from cotsearch.nn.layers.aggregation import local_aggregate

# A symbolic trace (torch.fx) records the aggregation as one call, so the traced graph runs the
# same dispatch (fast CPU path, Triton kernels) as eager code.
torch.fx.wrap("local_aggregate")


@register_notrace_module  # timm's FX feature extraction keeps the layer whole: it runs as in eager code
class CoTLayer(nn.Module):
    """Contextual Transformer layer, replacing the kxk conv of a bottleneck.

    static context  K1 = key_embed(x)                       (grouped kxk conv)
    attention       A  = embed([x, K1])                     (two 1x1 convs, GroupNorm per map)
    dynamic context K2 = SiLU(BN(aggregate(conv1x1(x), A)))  (kxk window, heads shared maps)
    fusion          out = a0 * K2 + a1 * K1, [a0, a1] = softmax(se(mean(K2 + K1)))
    """

    def __init__(self, plan: CoTPlan):
        super().__init__()
        dim, kernel_size, groups = plan.dim, plan.kernel_size, plan.groups
        self.dim, self.kernel_size, self.groups, self.heads = dim, kernel_size, groups, plan.heads
        key_groups, hidden, taps = plan.key_groups, plan.hidden, plan.taps
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=key_groups, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Sequential(
            nn.Conv2d(2 * dim, hidden, 1, groups=groups, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, taps * self.heads, 1, groups=groups),
            nn.GroupNorm(num_groups=self.heads, num_channels=taps * self.heads),
        )
        self.conv1x1 = nn.Sequential(nn.Conv2d(dim, dim, 1, groups=groups, bias=False), nn.BatchNorm2d(dim))
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.SiLU(inplace=True)
        fusion_chs = plan.fusion_chs
        self.se = nn.Sequential(
            nn.Conv2d(dim, fusion_chs, 1),
            nn.BatchNorm2d(fusion_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(fusion_chs, 2 * dim, 1),
        )

    def query_key(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """CoT: queries then keys, as two blocks of channels."""
        return torch.cat([x, keys], dim=1)

    def query_key_weights(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding conv's weight split into its query and key parts (see query_key)."""
        return weight[:, : self.dim // self.groups], weight[:, self.dim // self.groups :]

    def embed_query_key(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """embed[0]([x, keys]). When a gradient is needed, as conv(x) + conv(keys): the same
        sum without the concatenation, which backward would otherwise keep (twice the layer's
        width); without one, the single conv on the concatenation is the faster."""
        conv = self.embed[0]
        if not self.needs_grad(x, keys, conv.weight):
            return conv(self.query_key(x, keys))
        w_query, w_key = self.query_key_weights(conv.weight)
        return F.conv2d(x, w_query, conv.bias, groups=self.groups) + F.conv2d(keys, w_key, groups=self.groups)

    def needs_grad(self, x: torch.Tensor, keys: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether backward will run through the embedding. A symbolic trace (torch.fx) has no
        gradients to look at (its inputs are Proxies) and records the plain concatenation."""
        if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript skips this block only as its own if
            if isinstance(x, torch.fx.Proxy):
                return False
        return torch.is_grad_enabled() and (x.requires_grad or keys.requires_grad or weight.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = self.key_embed(x)  # static context
        dynamic = self.dynamic_context(x, self.attention_maps(x, keys))
        return self.fuse(dynamic, keys)

    def attention_maps(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """embed([x, keys]): heads * k*k maps, each normalised with its group."""
        attn = self.embed_query_key(x, keys)
        for i, module in enumerate(self.embed):  # not embed[1:]: that builds a module per call
            if i > 0:
                attn = module(attn)
        return attn

    def dynamic_context(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """The values aggregated over each kxk window by the attention maps, then BN and SiLU.
        Shapes go through flatten / unflatten, never read: a symbolic trace cannot unpack them."""
        g, k = self.groups, self.kernel_size
        # Each group of channels aggregates with its own heads // g maps: the groups join the batch.
        values = self.conv1x1(x).unflatten(1, [g, self.dim // g]).flatten(0, 1)
        attn = attn.unflatten(1, [g, self.heads // g, k * k]).flatten(0, 1)
        dynamic = local_aggregate(values, attn, k).unflatten(0, [-1, g]).flatten(1, 2)
        return self.act(self.bn(dynamic))

    def fuse(self, dynamic: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Attention fusion: a softmax over the two contexts per channel, from their pooled sum.
        mean(K2 + K1) as two means and the weighted sum as one multiply-add: fewer full-size
        temporaries than the official expression, same numbers."""
        pooled = dynamic.mean((2, 3), keepdim=True) + keys.mean((2, 3), keepdim=True)
        weights = self.se(pooled).reshape(-1, self.dim, 2).softmax(dim=2)
        return torch.addcmul(dynamic * weights[:, :, 0, None, None], keys, weights[:, :, 1, None, None])


@register_notrace_module
class CoXtLayer(CoTLayer):
    """CoTNeXt's layer: CoT with cardinality `plan.groups` (2 in the paper). The query-key
    embedding, value conv and aggregation run per group (the key conv's groups default to
    4 * groups in the spec)."""

    def query_key(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """CoXt: queries and keys interleaved channel by channel (x0, k0, x1, k1, ...), so
        each group of the grouped embedding sees its own channels' queries and keys."""
        return torch.stack([x, keys], dim=2).flatten(1, 2)

    def query_key_weights(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interleaved: even input channels are queries, odd ones keys."""
        return weight[:, 0::2], weight[:, 1::2]
