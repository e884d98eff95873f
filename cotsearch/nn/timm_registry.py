"""Registers every preset with timm, so `timm.create_model("cotnet50", num_classes=10)`
and `features_only=True` work once cotsearch is imported.

No weights can be downloaded; local ones load through timm's own mechanism:
`timm.create_model("cotnet50", pretrained=True, pretrained_cfg_overlay=dict(file="model.safetensors"))`
with a file from `cotsearch convert`."""

from __future__ import annotations

from timm.models import build_model_with_cfg, register_model

from cotsearch.nn.model import CoTNet, default_cfg
from cotsearch.arch.load import list_presets, load_spec

default_cfgs: dict[str, dict] = {}  # read by timm's register_model


def _create(name: str, pretrained: bool = False, **kwargs) -> CoTNet:
    return build_model_with_cfg(CoTNet, name, pretrained, spec=load_spec(name), **kwargs)


def _register(name: str) -> None:
    def entrypoint(pretrained: bool = False, **kwargs) -> CoTNet:
        return _create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"cotsearch preset {name}"
    default_cfgs[name] = dict(url="", **default_cfg(load_spec(name)))
    register_model(entrypoint)


for _name in list_presets():
    _register(_name)
