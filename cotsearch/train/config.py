"""The training recipe, validated like a spec and importable without torch (a search
space embeds it, and spaces are validated and priced before anything is built)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from cotsearch.arch.spec import StrictModel


class TrainConfig(StrictModel):
    """A training recipe. Defaults suit the small-image proxies of a search. Strict as a
    spec: unknown keys and values of the wrong type (a string for a number) are errors."""

    epochs: int = Field(3, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float | None = Field(None, gt=0, description="peak learning rate; null: 4e-3 for adamw, 0.1 for sgd")
    opt: Literal["adamw", "sgd"] = Field("adamw", description="adamw, or sgd: SGD with Nesterov momentum 0.9")
    weight_decay: float = Field(5e-5, ge=0, description="not applied to biases and norm weights")
    warmup_epochs: int = Field(0, ge=0)
    min_lr: float = Field(1e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    augment: bool = Field(False, description="random shifts and flips (in-memory sets) or timm's train transforms "
                          "(image folders); off by default: it slows the few epochs of a proxy run")
    mixup: float = Field(0.0, ge=0, description="mixup alpha; 0 = off")
    cutmix: float = Field(0.0, ge=0, description="cutmix alpha; 0 = off")
    amp: bool = Field(True, description="mixed precision (bf16 or fp16) on GPU; ignored on CPU")
    channels_last: bool = Field(True, description="channels_last memory format: faster convolutions and their "
                                "backward on CPU (oneDNN) and GPU; see benchmarks/speed.py")
    seed: int = Field(0, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    # 128: evaluating 10,000 Fashion-MNIST images with cotnet_tiny on 2 CPU cores took 11 s at
    # 128, 16 s at 256 and 21 s at 512 (the unfolded CoT windows of a big batch leave the
    # cache); a GPU may do better with more (spaces/imagenet_cot_stages.yaml sets 256)
    eval_batch_size: int = Field(128, ge=1, description="images per batch when evaluating (no gradients kept)")

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else (0.1 if self.opt == "sgd" else 4e-3)

    def fingerprint(self) -> str:
        """What must match for a checkpoint to be resumed (the device may change)."""
        data = self.model_dump(exclude={"device", "eval_batch_size"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
