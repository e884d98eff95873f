"""Dispatch cost at batch 1: how many aten calls one eval forward of CoTNet-50 makes against
timm's resnet50 (counted by torch.profiler), and the median time of each forward at a small
input, where the calls' overhead rather than the arithmetic dominates. 32 px, fp32, CPU; the
two models alternate, 7 rounds after 3 warm-up forwards.

Usage: python benchmarks/dispatch.py [--size 32] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import timm
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from common import describe_machine, median  # noqa: E402

import cotsearch  # noqa: E402


def aten_calls(model: torch.nn.Module, x: torch.Tensor) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x)
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {"cotnet50": cotsearch.build_model(cotsearch.load_spec("cotnet50")).eval(),
              "resnet50": timm.create_model("resnet50").eval()}
    x = torch.randn(1, 3, args.size, args.size)
    times: dict[str, list[float]] = {name: [] for name in models}
    print(describe_machine())
    with torch.inference_mode():
        for model in models.values():
            for _ in range(3):
                model(x)
        calls = {name: aten_calls(model, x) for name, model in models.items()}
        for _ in range(args.rounds):
            for name, model in models.items():
                began = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - began)
    for name in models:
        print(f"{name}: {calls[name]:,} aten calls, median {1e3 * median(times[name]):.1f} ms at {args.size} px, batch 1")


if __name__ == "__main__":
    main()
