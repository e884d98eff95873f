"""Cost-model benchmark.

1. Pricing throughput: how many specs per second `estimate_cost` prices (random valid
   specs from spaces of the tiny and the ImageNet layouts, and the presets).
2. Latency of every preset beside timm's resnet50, in one process, alternated: each round
   measures every model once (torch.utils.benchmark, median of the round), and the report
   gives each model's median over rounds and its ratio to resnet50 measured in the same
   rounds. Batch 1, fp32, eval, each model at its own default input size (and resnet50 at 224).

Usage: python benchmarks/cost.py [--rounds 3] [--device cpu] [--out benchmarks/results/cost.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import timm

sys.path.insert(0, str(Path(__file__).parent))
from common import describe_machine, median  # noqa: E402

import cotsearch  # noqa: E402
from cotsearch.cost.analytic import estimate_cost  # noqa: E402
from cotsearch.cost.latency import measure_latency  # noqa: E402


def random_spec(rng: random.Random, base: cotsearch.BackboneSpec) -> cotsearch.BackboneSpec:
    """A variation of `base`: where CoT goes, kernel, widths and depths."""
    stages = []
    for stage in base.stages:
        kind = rng.choice(["cot", "conv", "se_conv", ["cot", "conv"]])
        stages.append(stage.model_copy(update={
            "depth": max(1, stage.depth + rng.choice([-1, 0, 1])),
            "planes": stage.planes * rng.choice([1, 2]),
            "blocks": kind,
            "cot": stage.cot.model_copy(update={"kernel_size": rng.choice([3, 5])}),
        }))
    return base.model_copy(update={"stages": stages})


def pricing_rate(base_name: str, n: int = 2000) -> dict:
    rng = random.Random(0)
    base = cotsearch.load_spec(base_name)
    specs = [random_spec(rng, base) for _ in range(n)]
    start = time.perf_counter()
    for spec in specs:
        estimate_cost(spec)
    elapsed = time.perf_counter() - start
    return {"space": f"variations of {base_name}", "specs": n, "specs_per_s": n / elapsed, "ms_per_spec": elapsed / n * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cost.json")
    args = parser.parse_args()

    machine = describe_machine()
    print("machine:", json.dumps(machine))
    pricing = [pricing_rate("cotnet_tiny"), pricing_rate("cotnet50")]
    for p in pricing:
        print(f"pricing {p['space']}: {p['specs_per_s']:,.0f} specs/s ({p['ms_per_spec']:.3f} ms per spec)")

    models = {"resnet50 (timm)": timm.create_model("resnet50")}
    models.update({name: cotsearch.build_model(cotsearch.load_spec(name)) for name in cotsearch.list_presets()})
    rounds: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name, model in models.items():
            in_chans, size, _ = model.pretrained_cfg["input_size"]
            lat = measure_latency(model, args.device, batch_size=1, min_run_time=0.3)
            rounds[name].append(lat.median_ms)
            print(f"round {r + 1}: {name:18s} {in_chans}x{size}  {lat.median_ms:8.2f} ms (IQR {lat.iqr_ms:.2f})", flush=True)

    base = rounds["resnet50 (timm)"]
    rows = []
    print(f"\n{'model':18s} {'input':>7s} {'GMACs':>7s} {'median ms':>10s} {'x resnet50':>10s}")
    for name, times in rounds.items():
        ratio = median([t / b for t, b in zip(times, base)])
        gmacs = 4.12 if "timm" in name else estimate_cost(cotsearch.load_spec(name)).macs / 1e9  # resnet50: the paper's figure
        size = models[name].pretrained_cfg["input_size"][-1]
        rows.append({"model": name, "input_size": size, "gmacs": gmacs, "median_ms": median(times),
                     "rounds_ms": times, "ratio_to_resnet50": ratio})
        print(f"{name:18s} {size:>7d} {gmacs:7.3f} {median(times):10.2f} {ratio:10.2f}")

    result = {"benchmark": "cost", "how": __doc__.strip().splitlines()[0], "machine": machine, "device": args.device,
              "rounds": args.rounds, "pricing": pricing, "latency_batch1_fp32": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
