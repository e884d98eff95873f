"""Training a spec on a data set: timm's optimizer and scheduler factories, label
smoothing, optional mixup / cutmix, AMP on GPU, channels_last, per-epoch validation
with a callback that can stop the run, and checkpoints that resume exactly.

Runs are reproducible on CPU: the initial weights come from the seed (init_model), and
every epoch reseeds torch's, NumPy's and Python's global RNGs (dropout, drop path, mixup)
and the data order / augmentation from (seed, epoch), so the same seed gives the same
numbers, and a resumed run continues as if it had never stopped.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.latency import resolve_device
from cotsearch.data.splits import DataSplits
from cotsearch.errors import CheckpointError, DataError
from cotsearch.nn.model import CoTNet, build_model
from cotsearch.train.checkpoint import checkpoint_state, load_checkpoint, save_checkpoint
from cotsearch.train.config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float | None  # None: not validated after this epoch (see train's `validate`)
    val_top1: float | None
    train_images_per_s: float
    lr: float
    seconds: float
    val_seconds: float = 0.0  # of `seconds`, spent validating


@dataclass
class TrainResult:
    history: list[EpochMetrics] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    test_top1: float | None = None
    test_loss: float | None = None

    @property
    def train_images_per_s(self) -> float:
        return sum(e.train_images_per_s for e in self.history) / len(self.history) if self.history else 0.0

    def to_dict(self) -> dict:
        return {"history": [asdict(e) for e in self.history], "stopped_early": self.stopped_early,
                "resumed_from_epoch": self.resumed_from_epoch, "test_top1": self.test_top1,
                "test_loss": self.test_loss, "train_images_per_s": self.train_images_per_s}


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


@torch.no_grad()
def evaluate(model: torch.nn.Module, split, config: TrainConfig, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy as a fraction) over a split."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    for x, y in split.batches(config.eval_batch_size, shuffle=False, seed=0, augment=False):
        x, y = x.to(device, memory_format=memory_format, non_blocking=True), y.to(device)
        with _autocast(device, config.amp):
            logits = model(x)
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    return loss_sum / max(count, 1), correct / max(count, 1)


def init_model(spec: BackboneSpec, seed: int = 0) -> CoTNet:
    """The spec's network with its initial weights drawn from `seed` (so a run is
    reproducible from its start). Fit the spec to the data first (`DataShape.apply`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """timm's AdamW, or SGD with Nesterov momentum 0.9; no weight decay on biases and norms."""
    return create_optimizer_v2(model, opt="sgd" if config.opt == "sgd" else "adamw", lr=config.peak_lr(),
                               weight_decay=config.weight_decay, momentum=0.9)


def train(
    model: CoTNet,
    data: DataSplits,
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    test: bool = True,
    validate: Callable[[int], bool] | None = None,
) -> TrainResult:
    """Train `model` in place. `on_epoch(metrics)` returning True stops the run (a search's
    early stopping); `on_step(step, steps_per_epoch, loss)` drives progress bars;
    `checkpoint` is saved after every epoch and resumed from if it exists; `validate(epoch)`
    says after which epochs (from 1) to validate (default: every one)."""
    if data.shape.apply(model.spec) != model.spec:
        raise DataError(f"{data.name} has {data.shape}; the model was built for "
                        f"{model.spec.in_chans}x{model.spec.input_size}x{model.spec.input_size} images, "
                        f"{model.spec.num_classes} classes (fit its spec to the data with DataShape.apply)")
    device = resolve_device(config.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    lr = config.peak_lr()
    optimizer = make_optimizer(model, config)
    steps = math.ceil(len(data.train) / config.batch_size)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=config.epochs, min_lr=config.min_lr,
                                       warmup_epochs=config.warmup_epochs, warmup_lr=lr * 0.01,
                                       step_on_epochs=False, updates_per_epoch=steps)
    mixing = config.mixup > 0 or config.cutmix > 0
    mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                  num_classes=data.num_classes) if mixing else None
    loss_fn = SoftTargetCrossEntropy() if mixing else (
        LabelSmoothingCrossEntropy(config.label_smoothing) if config.label_smoothing else torch.nn.CrossEntropyLoss())
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported())

    result = TrainResult()
    identity = {"spec": model.spec.spec_hash(), "config": config.fingerprint(), "data": data.name, "train_size": len(data.train)}
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        saved = checkpoint_state(checkpoint)
        if saved.get("identity") != identity:  # never mix two runs' weights or recipes
            what = [k for k in identity if saved.get("identity", {}).get(k) != identity[k]] or ["run"]
            raise CheckpointError(f"--checkpoint {checkpoint}: saved by another run (its {', '.join(what)} differs); "
                                  "use another path, or delete it to start afresh")
        load_checkpoint(checkpoint, model, optimizer)
        start_epoch = saved["epoch"]
        result.history = [EpochMetrics(**e) for e in saved["history"]]
        result.resumed_from_epoch = start_epoch

    for epoch in range(start_epoch, config.epochs):
        epoch_seed = config.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed)  # timm's Mixup draws from NumPy
        random.seed(epoch_seed)
        model.train()
        began, seen, loss_sum = time.perf_counter(), 0, 0.0
        batches = data.train.batches(config.batch_size, shuffle=True, seed=epoch_seed, augment=config.augment)
        for step, (x, y) in enumerate(batches):
            if len(y) == 1:
                continue  # a last batch of one image: BatchNorm cannot take statistics over one value per channel
            x, y = x.to(device, memory_format=memory_format, non_blocking=True), y.to(device, non_blocking=True)
            target = y
            if mixup is not None:
                # timm's Mixup pairs images, so it needs an even batch; an odd last batch gets
                # the same soft (smoothed one-hot) targets without mixing.
                x, target = mixup(x, y) if len(y) % 2 == 0 else (
                    x, mixup_target(y, data.num_classes, 1.0, config.label_smoothing))
            with _autocast(device, config.amp):
                loss = loss_fn(model(x), target)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step_update(epoch * steps + step + 1)
            seen += len(y)
            loss_sum += loss.item() * len(y)
            if on_step is not None:
                on_step(step + 1, steps, loss.item())
        train_seconds = time.perf_counter() - began
        val_loss = val_top1 = None
        if validate is None or validate(epoch + 1):
            val_loss, val_top1 = evaluate(model, data.val, config, device)
        metrics = EpochMetrics(epoch + 1, loss_sum / max(seen, 1), val_loss, val_top1, seen / train_seconds,
                               optimizer.param_groups[0]["lr"], time.perf_counter() - began,
                               time.perf_counter() - began - train_seconds)
        result.history.append(metrics)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, {"identity": identity, "epoch": epoch + 1,
                                                           "history": [asdict(e) for e in result.history]})
        if on_epoch is not None and on_epoch(metrics):
            result.stopped_early = epoch + 1 < config.epochs
            break
    if test:
        result.test_loss, result.test_top1 = evaluate(model, data.test, config, device)
    return result
