"""Registers every preset with timm, so `timm.create_model("cotnet50", num_classes=10)`
and `features_only=True` (any feature_cls: hook, fx, getter) work once cotsearch is imported:
`import cotsearch` imports this module as soon as timm is imported too, in either order.

No weights can be downloaded; local ones load through timm's own mechanism:
`timm.create_model("cotnet50", pretrained=True, pretrained_cfg_overlay=dict(file="model.safetensors"))`
with a file from `cotsearch convert`."""

from __future__ import annotations

from timm.models import build_model_with_cfg, register_model

from cotsearch.arch.load import list_presets, load_spec
from cotsearch.nn.model import CoTNet, default_cfg

default_cfgs: dict[str, dict] = {}  # read by timm's register_model
GEOMETRY_FIELDS = ("input_size", "pool_size", "crop_pct", "mean", "std")  # what in_chans and input_size decide


def _create(name: str, pretrained: bool = False, pretrained_cfg_overlay: dict | None = None, **kwargs) -> CoTNet:
    spec = load_spec(name)
    overlay = dict(pretrained_cfg_overlay or {})
    geometry = {k: kwargs[k] for k in ("input_size", "in_chans") if kwargs.get(k) is not None}
    if geometry:  # another input: the cfg's fields that depend on it follow (the caller's overlay still wins)
        cfg = default_cfg(spec.model_copy(update=geometry))
        overlay = {k: cfg[k] for k in GEOMETRY_FIELDS} | overlay
    every_map = {"out_indices": tuple(range(len(spec.stages) + 1))}  # features_only's default (timm's assumes 5)
    return build_model_with_cfg(CoTNet, name, pretrained, pretrained_cfg_overlay=overlay, feature_cfg=every_map,
                                spec=spec, **kwargs)


def _register(name: str) -> None:
    def entrypoint(pretrained: bool = False, **kwargs) -> CoTNet:
        return _create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"cotsearch preset {name}"
    default_cfgs[name] = default_cfg(load_spec(name))
    register_model(entrypoint)


for _name in list_presets():
    _register(_name)
