"""Will a spec fit on a device? The cost model's parameter and activation counts against
the device's free memory, checked before anything is built or allocated."""

from __future__ import annotations

import torch

from cotsearch.cost.analytic import CostReport
from cotsearch.errors import CotsearchError

BYTES = 4  # fp32
# Training keeps weights, gradients and AdamW's two moments (4 copies of the parameters),
# and for the backward pass about three tensors per counted layer output (the conv, its
# norm and its activation). Inference needs the weights and a few live outputs.
TRAIN_PARAM_COPIES, TRAIN_ACT_COPIES = 4, 3


class OutOfMemory(CotsearchError):
    """A spec that cannot fit on the device it was asked to run on."""


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        # and what PyTorch's allocator keeps reserved but unused in this process (a reused
        # worker keeps the blocks of its previous trial): free for this trial too
        return torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        import psutil  # a Ray dependency

        return psutil.virtual_memory().available


def needed_bytes(cost: CostReport, batch_size: int, training: bool) -> int:
    if training:
        return BYTES * (TRAIN_PARAM_COPIES * cost.params + TRAIN_ACT_COPIES * cost.acts * batch_size)
    return BYTES * (cost.params + 2 * cost.acts * batch_size // max(len(cost.parts), 1))


def check_fits(name: str, cost: CostReport, batch_size: int, device: torch.device, training: bool) -> None:
    """Raise OutOfMemory, with the estimate, when a network of this cost (priced at the
    image size it will run at) clearly cannot run on `device`."""
    need = needed_bytes(cost, batch_size, training)
    free = free_bytes(device)
    if need > free:
        what = f"training at batch {batch_size}" if training else f"inference at batch {batch_size}"
        raise OutOfMemory(
            f"{name}: too big for {device}: {what} at {cost.input_size[0]} px needs about "
            f"{need / 2**30:,.1f} GiB ({cost.params / 1e6:,.1f} M params, {cost.acts / 1e6:,.1f} M activations "
            f"per image), and {free / 2**30:,.1f} GiB is free"
        )
