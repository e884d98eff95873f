"""Official CoTNet checkpoints (JDAI-CV/CoTNet) to cotsearch models.

cotsearch names its modules as the official code does, so converting is: read the
checkpoint safely, find the state_dict, check every key and shape against the preset,
and take the class count (and input channels) from the checkpoint itself."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from cotsearch.arch.load import load_spec
from cotsearch.errors import CheckpointError
from cotsearch.nn.model import CoTNet, build_model, compare_state_dict

ZIP_MAGIC = b"PK"  # torch.save's format since PyTorch 1.6
PICKLE_PROTO = b"\x80"  # the first byte of a pickle of protocol 2 or later (its legacy format)


def read_checkpoint(path: str | Path, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """A state_dict from a checkpoint file: a bare state_dict, or a dict holding
    `state_dict` / `state_dict_ema` (timm's train script). Read with weights_only=True:
    a pickle that carries code is refused, never run; a file that is neither of torch.save's
    formats is refused before torch reads it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    zipped = zipfile.is_zipfile(path)
    with path.open("rb") as f:
        start = f.read(2)
    if not start:
        raise CheckpointError(f"{path}: empty file; expected a PyTorch checkpoint")
    if not zipped and start == ZIP_MAGIC:
        raise CheckpointError(f"{path}: a zip archive without its end; the checkpoint is truncated or damaged")
    if not zipped and start[:1] != PICKLE_PROTO:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols other than its own
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused: not a plain tensor checkpoint ({_reason(e)})") from None
    except Exception as e:  # noqa: BLE001 - torch's readers meet a damaged file with anything (KeyError, IndexError ...)
        reason = f"{type(e).__name__}: {_reason(e)}"
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({reason})") from None
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


def _reason(e: Exception) -> str:
    """The sentence of torch's message that says what was wrong, without its advice (to load
    the file unsafely, or to allow what was refused), which is not this program's to give."""
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "unsupported content")
    return line.split(". ", 1)[0][:160]


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
