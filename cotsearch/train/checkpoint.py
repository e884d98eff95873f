"""Training checkpoints as safetensors: model and optimizer tensors, with the rest of the
state (epoch, history, optimizer hyper-parameters) as JSON metadata. No pickle, written
atomically, so a run killed at any moment resumes from its last finished epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

from cotsearch.errors import CheckpointError
from cotsearch.files import atomic_write_bytes


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in opt["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    metadata = {"state": json.dumps(state), "param_groups": json.dumps(opt["param_groups"]),
                "optim_scalars": json.dumps(scalars)}
    atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))


def checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The saved state (epoch, history, the run's identity) without loading any tensor."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["state"])
    except (OSError, SafetensorError, KeyError, ValueError) as e:
        raise CheckpointError(f"--checkpoint {path}: not a cotsearch training checkpoint ({type(e).__name__})") from None


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model and optimizer in place; return the saved state dict."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
    device = next(model.parameters()).device
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value.to(device)
    for idx, entries in json.loads(header["optim_scalars"]).items():
        state.setdefault(int(idx), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(header["param_groups"])})
    return json.loads(header["state"])
