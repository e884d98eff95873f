"""Where a CoT layer's time goes: the same models with one part of every CoT layer swapped,
measured like benchmarks/speed.py (one process, alternated rounds, medians, per-round ratios).

  1-tap aggregation  the aggregation reduced to its centre tap (1/9 of the work, attention
                     still trained): a floor for any aggregation kernel, however fast
  no GroupNorm       the attention maps not normalised
  no fusion          the layer returns dynamic + static context (no pooled MLP, no softmax)
  no BN+SiLU         the aggregation's output used as it is

These change the model's function: they bound costs, they are not models to use.

Groups: infer-b1 / infer-b8 (CoTNet-50 and timm resnet50, 224 px, eval) and tiny-train-b128
(cotnet_tiny and resnet_tiny, 28 px, AdamW step, NCHW).

Usage: python benchmarks/ablation.py [--rounds 5] [--out benchmarks/results/ablation-cpu.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path
from unittest import mock

import timm
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import describe_machine  # noqa: E402
from speed import Case, inference_step, run_group, summarise, training_step  # noqa: E402

import cotsearch  # noqa: E402
from cotsearch.nn.layers.aggregation import split_heads, use_aggregation  # noqa: E402
from cotsearch.nn.layers.cot import CoTLayer  # noqa: E402


def one_tap(values: torch.Tensor, attn: torch.Tensor, kernel_size: int) -> torch.Tensor:
    n, c, h, w = values.shape
    return (split_heads(values, attn.shape[1]) * attn[:, None, :, kernel_size * kernel_size // 2]).reshape(n, c, h, w)


@contextlib.contextmanager
def without(*names: str):
    """Every CoT layer's submodules `names` (dotted, e.g. "embed.4") replaced by identities."""
    swapped = []
    for layer in LAYERS:
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = layer.get_submodule(parent_name) if parent_name else layer
            swapped.append((parent, child, getattr(parent, child)))
            setattr(parent, child, torch.nn.Identity())
    try:
        yield
    finally:
        for parent, child, module in swapped:
            setattr(parent, child, module)


def no_fusion():
    return mock.patch.object(CoTLayer, "fuse", lambda self, dynamic, keys: dynamic + keys)


LAYERS: list[CoTLayer] = []  # the CoT layers of the models built, for `without`


def variants():
    """(suffix, context factory) for every swapped part."""
    return [
        (" 1-tap aggregation", lambda: use_aggregation(one_tap)),
        (" no GroupNorm", lambda: without("embed.4")),
        (" no fusion", no_fusion),
        (" no BN+SiLU", lambda: without("bn", "act")),
    ]


def built(name: str) -> torch.nn.Module:
    model = cotsearch.build_model(cotsearch.load_spec(name))
    LAYERS.extend(m for m in model.modules() if isinstance(m, CoTLayer))
    return model


def make_cases(group: str) -> list[Case]:
    if group.startswith("infer-b"):
        x = torch.randn(int(group[7:]), 3, 224, 224)
        model = built("cotnet50").eval()
        cases = [Case("cotnet50", inference_step(model, x)),
                 Case("resnet50", inference_step(timm.create_model("resnet50").eval(), x))]
        return cases + [Case("cotnet50" + s, inference_step(model, x), ctx, vs="cotnet50") for s, ctx in variants()]
    x = torch.randn(128, 1, 28, 28)
    cases = [Case("cotnet_tiny", training_step(built("cotnet_tiny"), x, "adamw")),
             Case("resnet_tiny", training_step(cotsearch.build_model(cotsearch.load_spec("resnet_tiny")), x, "adamw"))]
    return cases + [Case("cotnet_tiny" + s, training_step(built("cotnet_tiny"), x, "adamw"), ctx,
                         vs="cotnet_tiny") for s, ctx in variants()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--groups", default="infer-b1,infer-b8,tiny-train-b128")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    report = {"machine": describe_machine(), "rounds": args.rounds, "method": __doc__.split("Usage:")[0].strip(),
              "groups": {}}
    print(json.dumps(report["machine"]))
    for group in args.groups.split(","):
        cases = make_cases(group)
        run_group(cases, torch.device("cpu"), args.rounds)
        result = summarise(group, cases)
        conv_twin = result[cases[1].name]["median_ms"]
        for name, r in result.items():
            r["vs_conv_twin"] = r["median_ms"] / conv_twin
        report["groups"][group] = result
        print(f"\n{group}")
        for name, r in result.items():
            print(f"  {name:34s} {r['median_ms']:9.2f} ms  {r['ratio']:5.2f}x {r['vs']:12s}  "
                  f"{r['vs_conv_twin']:5.2f}x {cases[1].name}")
        sys.stdout.flush()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
