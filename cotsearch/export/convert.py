"""Official CoTNet checkpoints (JDAI-CV/CoTNet) to cotsearch models.

cotsearch names its modules as the official code does, so converting is: read the
checkpoint safely, find the state_dict, check every key and shape against the preset,
and take the class count (and input channels) from the checkpoint itself."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from cotsearch.arch.load import load_spec
from cotsearch.errors import CheckpointError
from cotsearch.nn.model import CoTNet, build_model, compare_state_dict


def read_checkpoint(path: str | Path, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """A state_dict from a checkpoint file: a bare state_dict, or a dict holding
    `state_dict` / `state_dict_ema` (timm's train script). Read with weights_only=True:
    a pickle that carries code is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else "unsupported content"
        raise CheckpointError(f"{path}: refused: not a plain tensor checkpoint ({first})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    keys = ("state_dict_ema", "state_dict") if use_ema else ("state_dict", "state_dict_ema")
    for key in keys:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: holds no tensors (expected a state_dict, or a dict with 'state_dict')")
    return state


def convert_state_dict(state: dict[str, torch.Tensor], preset: str, source: str = "checkpoint") -> CoTNet:
    """Build `preset` with the checkpoint's class count and input channels, and load it."""
    for key in ("fc.weight", "conv1.weight", "conv1.0.weight"):
        if key in state and state[key].ndim < 2:
            raise CheckpointError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected 2 or more dims")
    num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 0
    stem = state.get("conv1.weight", state.get("conv1.0.weight"))
    in_chans = stem.shape[1] if stem is not None else None
    model = build_model(load_spec(preset), num_classes=num_classes, in_chans=in_chans)
    mismatch = compare_state_dict(model, state)
    if mismatch and mismatch.bad_shape:
        key, given, needed = mismatch.bad_shape
        raise CheckpointError(f"{source}: {key} has shape {given}, {preset} needs {needed}")
    if mismatch:
        raise CheckpointError(
            f"{source}: does not fit preset {preset}: {len(mismatch.missing)} keys missing {mismatch.missing[:3]}, "
            f"{len(mismatch.unexpected)} unexpected {mismatch.unexpected[:3]}"
        )
    model.load_state_dict(state)
    return model.eval()


def convert_checkpoint(path: str | Path, preset: str, use_ema: bool = False) -> CoTNet:
    return convert_state_dict(read_checkpoint(path, use_ema), preset, str(path))
