"""Zero-cost proxies: scores of an untrained network from one mini-batch, which a search can
use to rank specs before training any (Abdelfattah et al., "Zero-Cost Proxies for
Lightweight NAS", ICLR 2021, and the papers named below). Each proxy takes a model and a
batch and returns one float, higher meaning "expected to train better"; `score_spec` builds
a fresh, seeded model of a spec for each and adds the analytic params and MACs, the
baselines any proxy must beat.

The model is scored as built, except that the last BN of every block starts at one instead
of zero (`zero_init_last` off): with it at zero every residual branch is silent at
initialisation, so no proxy could tell a CoT block from a conv one. BN layers use the batch's
statistics (train mode), as in the reference implementations, except for synflow (below).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import get_act_layer
from torch import nn

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import estimate_cost
from cotsearch.cost.latency import resolve_device
from cotsearch.data.splits import DataSplits
from cotsearch.search.space import PROXY_NAMES
from cotsearch.train.loop import init_model

JACOB_K = 1e-5  # jacob_cov's regulariser of the eigenvalues, as in Mellor et al. (v1)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights the pruning-based proxies score: those of convolutions and linear layers."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """d cross-entropy / d weight for each of `_weights`, zero where a weight takes no part."""
    model.train()
    weights = _weights(model)
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


@torch.no_grad()
def _saliency(weights: list[torch.Tensor], grads) -> float:
    """sum of |w * g| over every weight (one without a gradient adds nothing)."""
    return float(sum((w * g).abs().sum() for w, g in zip(weights, grads) if g is not None))


def _gates(model: nn.Module) -> tuple[type, ...]:
    """The activation modules whose inputs are NASWOT's units (see naswot)."""
    kinds = {nn.ReLU, nn.SiLU}
    if isinstance(getattr(model, "spec", None), BackboneSpec):
        kinds.add(get_act_layer(model.spec.act))
    return tuple(kinds)


@torch.no_grad()
def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021):
    log |K_H| of the kernel K_H[i, j] = N_A - hamming(c_i, c_j), c_i the binary code of
    image i (which side of zero each of the N_A activation units' input lies on). Networks
    that give different images different codes score higher.

    The units are the inputs of every ReLU (stem, bottlenecks, and inside CoT layers: the
    key embedding, the attention embedding and the fusion's bottleneck), of the spec's own
    activation if it is another, and of every SiLU (the CoT layer's dynamic context, the SE
    conv): SiLU(v) is about v above zero and about 0 below, so the sign of v is its on/off
    state as for a ReLU. The CoT fusion's softmax and the SE gates' sigmoid are not units:
    they weigh whole channels, they switch no unit off. Read before the module runs, so
    in-place activations do not matter."""
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def count(module, inputs):
        nonlocal kernel
        codes = (inputs[0] > 0).flatten(1).float()
        agree = codes @ codes.T + (1 - codes) @ (1 - codes).T  # units where two codes agree
        kernel += agree.double()

    gates = _gates(model)
    hooks = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, gates)]
    try:
        model.train()
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return float(torch.linalg.slogdet(kernel.cpu())[1])


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Synflow (Tanaka et al., "Pruning neural networks without any data by iteratively
    conserving synaptic flow", NeurIPS 2020): sum of |w * dR/dw| over the weights, with
    R = sum of the outputs of the network with every parameter and buffer made positive,
    for an all-ones image. In float64 (R overflows float32 in deep networks) and with BN in
    eval mode (a batch of one constant image has no variance), as the reference code.
    It changes the model's weights: score a copy."""
    model.double().eval()
    with torch.no_grad():
        for value in model.state_dict().values():
            value.abs_()
    weights = _weights(model)
    output = model(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device))
    grads = torch.autograd.grad(output.sum(), weights, allow_unused=True)
    return _saliency(weights, grads)


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """SNIP (Lee et al., ICLR 2019) as a network score: sum of |w * dL/dw|, L the
    cross-entropy of the batch."""
    return _saliency(_weights(model), _loss_gradients(model, x, y))


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over layers of the L2 norm of dL/dw (Abdelfattah et al. 2021)."""
    return float(sum(g.norm() for g in _loss_gradients(model, x, y)))


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The first NASWOT score (Mellor et al., arXiv 2006.04647 v1): how correlated the input
    Jacobians of the images are. With the eigenvalues v of their correlation matrix,
    -sum(log(v + k) + 1 / (v + k)), k = 1e-5: highest (about -batch size) when the images'
    Jacobians are uncorrelated."""
    model.train()
    x = x.detach().clone().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(model(x).sum(), x)
    corr = np.corrcoef(jacobian.flatten(1).double().cpu().numpy())
    v = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(v + JACOB_K) + 1.0 / (v + JACOB_K)))


def zico(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunks: int = 2) -> float:
    """ZiCo (Li et al., "Zero-Cost Proxy for Neural Architecture Search via Inverse
    Coefficient of Variation", ICLR 2023): the batch is split into `chunks` mini-batches (the
    paper uses two); for each layer, log of the sum over its weights of mean|g| / std(g),
    g the weight's gradient across the mini-batches; summed over the layers. Weights whose
    gradient does not vary are left out, and so are layers left with none, as in the
    authors' code."""
    per_chunk = [_loss_gradients(model, xs, ys) for xs, ys in zip(x.chunk(chunks), y.chunk(chunks))]
    score = 0.0
    for grads in zip(*per_chunk):
        g = torch.stack([t.flatten() for t in grads]).double()
        std, mean_abs = g.std(0, unbiased=False), g.abs().mean(0)
        varies = std > 0
        total = (mean_abs[varies] / std[varies]).sum().item()
        if total > 0:
            score += float(np.log(total))
    return score


SCORES = {"naswot": naswot, "synflow": synflow, "snip": snip, "grad_norm": grad_norm, "jacob_cov": jacob_cov,
          "zico": zico}


def proxy_batch(data: DataSplits, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxies' mini-batch: the first of the training split shuffled with `seed`, without
    augmentation (as every trial of a search would see them)."""
    return next(iter(data.train.batches(batch_size, shuffle=True, seed=seed, augment=False)))


def score_spec(spec: BackboneSpec, x: torch.Tensor, y: torch.Tensor, seed: int = 0,
               names: tuple[str, ...] = PROXY_NAMES, device: str = "cpu") -> tuple[dict[str, float], dict[str, float]]:
    """({proxy: score}, {proxy: seconds}) of a spec already fitted to the data. Each proxy
    scores its own fresh model with the initial weights of `seed`."""
    device = resolve_device(device)
    x, y = x.to(device), y.to(device)
    cost = estimate_cost(spec)
    scorable = spec.model_copy(update={"zero_init_last": False})
    scores, seconds = {}, {}
    for name in names:
        started = time.perf_counter()
        if name in SCORES:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                scores[name] = SCORES[name](init_model(scorable, seed).to(device), x, y)
        else:
            scores[name] = float(getattr(cost, name))  # params, macs
        seconds[name] = time.perf_counter() - started
    return scores, seconds
