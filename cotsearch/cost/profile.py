"""A spec's profile: analytic cost, measured FLOPs and latency, per part (stem, stages,
head) and in total, as one dict (what `cotsearch profile` prints)."""

from __future__ import annotations

import torch

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import as_hw, estimate_cost
from cotsearch.cost.flops import measure_flops
from cotsearch.cost.latency import prepare, resolve_device, time_callable
from cotsearch.cost.memory import check_fits
from cotsearch.nn.model import CoTNet, build_model

STEM_CHILDREN = ("conv1", "bn1", "act1", "maxpool")
HEAD_CHILDREN = ("global_pool", "fc")


def _part_callables(model: CoTNet, x: torch.Tensor) -> dict[str, callable]:
    """Each part of the model as a call on the input it sees in a full forward."""
    calls, feats = {"stem": lambda inp=x: model.forward_stem(inp)}, model.forward_stem(x)
    for name, stage in zip(model.stage_names, model.stages()):
        calls[name] = lambda stage=stage, inp=feats: stage(inp)
        feats = stage(feats)
    calls["head"] = lambda inp=feats: model.forward_head(inp)
    calls["total"] = lambda: model(x)
    return calls


def profile_spec(spec: BackboneSpec, input_size: int | None = None, device: str | None = "cpu",
                 batch_size: int = 1, measure_latency: bool = True, min_run_time: float = 0.3) -> dict:
    hw = as_hw(input_size or spec.input_size)
    cost = estimate_cost(spec, hw)
    check_fits(spec.name or "spec", cost, batch_size, resolve_device(device), training=False)
    model = build_model(spec)
    flops_total, flops_children = measure_flops(model, hw, spec.in_chans)
    measured = {p.name: 0 for p in cost.parts}
    for child, flops in flops_children.items():
        part = "stem" if child in STEM_CHILDREN else "head" if child in HEAD_CHILDREN else child
        measured[part] += flops // 2
    result = cost.to_dict()
    result.update(name=spec.name, measured_macs_conv=flops_total // 2, device=None, batch_size=batch_size, latency_ms=None)
    for part in result["stages"]:
        part["measured_macs_conv"] = measured[part["name"]]
        part["latency_ms"] = None
    if measure_latency:
        dev = resolve_device(device)
        model, _ = prepare(model, dev, torch.float32, channels_last=False)
        x = torch.randn(batch_size, spec.in_chans, *hw, device=dev)
        with torch.inference_mode():
            times = {name: time_callable(fn, dev, min_run_time, what=f"{spec.name or 'model'} {name}")
                     for name, fn in _part_callables(model, x).items()}
        for part in result["stages"]:
            part["latency_ms"] = times[part["name"]][0] * 1e3
        median, iqr, _, noisy = times["total"]
        result.update(device=str(dev), latency_ms=median * 1e3, latency_iqr_ms=iqr * 1e3, latency_noisy=noisy)
    return result
