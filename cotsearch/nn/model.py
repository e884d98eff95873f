"""The generic CoTNet-family network built from a spec, with timm's model interface
(`forward_features`, `forward_head`, `forward_intermediates`, `prune_intermediate_layers`,
`reset_classifier`, `feature_info`, ...), scriptable and symbolically traceable."""

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import create_classifier, get_act_layer
from timm.models import PretrainedCfg
from torch import nn

from cotsearch.arch.plan import StemPlan, plan_network
from cotsearch.arch.spec import BackboneSpec
from cotsearch.nn.blocks import Bottleneck


def feature_indices(num_features: int, indices: int | list[int] | tuple[int, ...] | None) -> tuple[list[int], int]:
    """The feature maps `indices` picks, as timm's models read it (None: all; n: the last n; a
    list: those, negative from the end), counted from the start, and the largest. Written here
    because timm has it only in a private module (timm.models._features.feature_take_indices)."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"indices {indices}: the last n feature maps need 1 <= n <= {num_features}")
        picked = list(range(num_features - indices, num_features))
    else:
        picked = [num_features + i if i < 0 else i for i in indices]
        if not picked or not all(0 <= i < num_features for i in picked):
            raise ValueError(f"indices {list(indices)}: expected feature map indices in -{num_features}..{num_features - 1}")
    return picked, max(picked)


def make_stem(stem: StemPlan, act_layer: type[nn.Module]) -> nn.Module:
    """The stem's convolutions (its last BN and activation are the model's bn1 / act1)."""
    w, in_chans = stem.width, stem.in_chans
    if stem.type == "classic":
        return nn.Conv2d(in_chans, w, 7, stride=2, padding=3, bias=False)
    if stem.type == "small":
        return nn.Conv2d(in_chans, w, 3, stride=1, padding=1, bias=False)
    return nn.Sequential(
        nn.Conv2d(in_chans, w, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(w),
        act_layer(inplace=True),
        nn.Conv2d(w, w, 3, padding=1, bias=False),
        nn.BatchNorm2d(w),
        act_layer(inplace=True),
        nn.Conv2d(w, 2 * w, 3, padding=1, bias=False),
    )


def default_cfg(spec: BackboneSpec) -> dict:
    """timm's pretrained_cfg for a spec, every field timm fills in: what timm.data needs to make
    transforms, and the final feature map's size at the spec's input size (pool_size)."""
    grey = spec.in_chans == 1
    pool = spec.feature_sizes()[-1]
    return PretrainedCfg(
        input_size=(spec.in_chans, spec.input_size, spec.input_size),
        num_classes=spec.num_classes,
        mean=(0.5,) if grey else IMAGENET_DEFAULT_MEAN,
        std=(0.5,) if grey else IMAGENET_DEFAULT_STD,
        interpolation="bicubic",
        crop_pct=0.875 if spec.input_size >= 64 else 1.0,
        pool_size=(pool, pool),
        first_conv="conv1.0" if spec.stem.type == "deep" else "conv1",
        classifier="fc",
        license="apache-2.0",  # the official CoTNet's
    ).to_dict()


class CoTNet(nn.Module):
    """Stem -> stages layer1..layerN of bottlenecks -> global pool -> dropout -> fc.

    Keyword overrides (num_classes, in_chans, input_size, drop_rate, drop_path_rate) are written into
    `self.spec`, so the spec always describes the network exactly. `device` and `dtype` are timm's
    factory keywords: the parameters are made on that device (`"meta"`: no memory at all) and cast
    to that dtype.
    """

    def __init__(self, spec: BackboneSpec, global_pool: str = "avg", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, **overrides):
        super().__init__()
        with torch.device(device) if device is not None else nullcontext():
            self._build(spec, global_pool, overrides)
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(self, spec: BackboneSpec, global_pool: str, overrides: dict) -> None:
        unknown = set(overrides) - {"num_classes", "in_chans", "input_size", "drop_rate", "drop_path_rate"}
        if unknown:
            raise TypeError(f"CoTNet got unexpected keyword arguments {sorted(unknown)}")
        spec = spec.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        spec = BackboneSpec.model_validate(spec.model_dump())  # re-check the overridden values
        self.spec = spec
        self.num_classes = spec.num_classes
        self.in_chans = spec.in_chans
        self.drop_rate = spec.drop_rate
        self.grad_checkpointing = False
        self.plan = plan = plan_network(spec)
        act_layer = get_act_layer(plan.act)

        self.conv1 = make_stem(plan.stem, act_layer)
        self.bn1 = nn.BatchNorm2d(plan.stem.out_chs)
        self.act1 = act_layer(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1) if plan.stem.pool else nn.Identity()
        self.feature_info = [dict(num_chs=plan.stem.out_chs, reduction=plan.stem.reduction, module="act1")]
        self.stage_names = [stage.name for stage in plan.stages]
        for stage in plan.stages:
            self.add_module(stage.name, nn.Sequential(*(Bottleneck(block, act_layer) for block in stage.blocks)))
            self.feature_info.append(dict(num_chs=stage.out_chs, reduction=stage.reduction, module=stage.name))

        self.num_features = self.head_hidden_size = spec.num_features
        self.global_pool, self.fc = create_classifier(self.num_features, self.num_classes, pool_type=global_pool)
        self.pretrained_cfg = self.default_cfg = default_cfg(spec)
        self.init_weights(zero_init_last=spec.zero_init_last)

    def init_weights(self, zero_init_last: bool = True) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    m.zero_init_last()

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups by depth, for timm's layer-wise learning-rate decay."""
        return {"stem": r"^conv1|bn1|maxpool", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> nn.Module | str:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for num_classes (0: none); global_pool None keeps the pooling."""
        self.num_classes = num_classes
        self.spec = self.spec.model_copy(update={"num_classes": num_classes})
        pool_type = self.global_pool.pool_type if global_pool is None else global_pool
        like = next(self.parameters())  # the new head goes where the network is, in its dtype
        with torch.device(like.device):
            self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=pool_type)
        self.fc.to(dtype=like.dtype)
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """The stem's last conv feeds bn1 (for cotsearch.optimize_for_inference)."""
        last = "conv1" if isinstance(self.conv1, nn.Conv2d) else f"conv1.{len(self.conv1) - 1}"
        return [(last, "bn1")]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of `feature_info` (stem, then each stage) that `indices` picks (None:
        all; n: the last n; a list: those, negative from the end), with the final features
        unless intermediates_only. stop_early skips the stages after the last one picked (the
        final features are then that stage's). There is no final norm, so `norm` changes nothing."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r}: only NCHW")
        take_indices, max_index = feature_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take_indices:
            intermediates.append(x)
        x = self.maxpool(x)
        stages = self.stages()[:max_index] if stop_early else self.stages()
        for index, stage in enumerate(stages, 1):
            x = self.forward_stage(stage, x)
            if index in take_indices:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last feature `indices` picks (timm's feature getter calls
        this), and the head. Returns the picked indices, counted from the start. The spec and
        plan keep describing the whole network."""
        take_indices, max_index = feature_indices(len(self.feature_info), indices)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Sequential())  # empty, so every loop over the stages still runs
        if max_index == 0:
            self.maxpool = nn.Identity()
        prune_end = max_index < len(self.stage_names)
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))

    def forward_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """One stage; with grad checkpointing, each block is a checkpoint."""
        if self.grad_checkpointing:
            for block in stage:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            return x
        return stage(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        # The stages by iterating the children: TorchScript unrolls that loop, but cannot look
        # attributes up by a computed name (self.stages()), nor pass a module to a method.
        for name, child in self.named_children():
            if name in self.stage_names:
                if torch.jit.is_scripting():
                    x = child(x)
                else:
                    x = self.forward_stage(child, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@dataclass
class StateDictMismatch:
    """How a state dict differs from a model's: keys it lacks or adds, and the first
    (key, given shape, needed shape) whose shape differs."""

    missing: list[str]
    unexpected: list[str]
    bad_shape: tuple[str, tuple, tuple] | None


def compare_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> StateDictMismatch | None:
    """None when `state` loads into `model` exactly (same keys, same shapes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    bad_shape = None
    if not missing and not unexpected:
        bad_shape = next(((k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                          if state[k].shape != v.shape), None)
    if missing or unexpected or bad_shape:
        return StateDictMismatch(missing, unexpected, bad_shape)
    return None


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(spec: BackboneSpec, **overrides) -> CoTNet:
    """The network of a spec (load one with `cotsearch.load_spec`, a preset name or a file)."""
    return CoTNet(spec, **overrides)
