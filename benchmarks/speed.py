"""Speed benchmark: CoT models against their plain-conv twins, in one process, alternated.

Groups (each model of a group is measured once per round; rounds run the models in turn,
forwards then backwards, so no model always follows the same one; every ratio compares
medians taken in the same rounds, and the per-round ratios are printed too):

  infer-b1, infer-b8   CoTNet-50 vs timm resnet50, 224 px, fp32, eval, inference_mode:
                       the default eager models; both in channels_last; CoTNet-50 after
                       cotsearch.optimize_for_inference vs resnet50 with its BNs folded by
                       torch.fx; CoTNet-50 on the plain unfold aggregation (the issue's
                       starting point); optionally both under torch.compile (--compile) and
                       both in onnxruntime, BNs folded, spinning threads off (--onnx).
  train-b8             one SGD step (forward, backward, update) at batch 8, 224 px, default
                       layout and channels_last, and the peak memory of that step.
  tiny-train-b128      one AdamW step of cotnet_tiny / resnet_tiny on 28 px, 1-channel, batch
                       128 (the Fashion-MNIST proxy's setting), both layouts, and cotnet_tiny
                       on the unfold path in both layouts.
  tiny-infer-b1/b8     the tiny models in eval.

A model "X unfold aggregation" is compared with X (how much slower the plain path is); any
other model with its conv twin measured the same way.

Peak memory on CPU: the PyTorch profiler's allocation / free records of one step, summed
in time order: the most tensor bytes PyTorch held at once beyond what it held before the
step (temporaries born and freed inside a single op are not seen). On CUDA:
torch.cuda.max_memory_allocated over the step, beyond what was allocated before it.

Usage: python benchmarks/speed.py [--rounds 5] [--device cpu|cuda] [--groups infer-b1,train-b8]
                                  [--compile] [--onnx] [--out benchmarks/results/speed-cpu.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import describe_machine, median  # noqa: E402

import cotsearch  # noqa: E402
from cotsearch.nn.layers.aggregation import local_aggregate_unfold, use_aggregation  # noqa: E402

ROUND_SECONDS = 0.4  # each model runs for at least this long per round


@dataclass
class Case:
    name: str
    step: Callable[[], object]
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    vs: str | None = None  # the case to compare with, where the names do not say
    times_ms: list[float] = field(default_factory=list)


def fx_folded(model: torch.nn.Module) -> torch.nn.Module:
    """resnet50 with its batch norms folded by torch.fx (it traces symbolically)."""
    from torch.fx.experimental.optimization import fuse

    return fuse(model.eval())


def inference_step(model, x):
    def step():
        with torch.inference_mode():
            return model(x)
    return step


def training_step(model, x, optimizer: str = "sgd"):
    model.train()
    y = torch.randint(0, model.num_classes, (x.shape[0],), device=x.device)
    opt = (torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=1e-3))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def onnx_step(model, x, threads: int):
    """The model (BNs already folded) exported to ONNX and run by onnxruntime."""
    from cotsearch.export.onnx import onnx_session

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model.eval(), (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=True)
    session, feed = onnx_session(path, threads), {"image": x.cpu().numpy()}
    return lambda: session.run(None, feed)


def make_cases(group: str, device: torch.device, args) -> list[Case]:
    cl = torch.channels_last
    big = lambda: cotsearch.build_model(cotsearch.load_spec("cotnet50")).to(device)  # noqa: E731
    r50 = lambda: timm.create_model("resnet50").to(device)  # noqa: E731
    unfold = lambda: use_aggregation(local_aggregate_unfold)  # noqa: E731
    if group.startswith("infer-b"):
        x = torch.randn(int(group[7:]), 3, 224, 224, device=device)
        xcl = x.contiguous(memory_format=cl)
        cases = [
            Case("cotnet50", inference_step(big().eval(), x)),
            Case("resnet50", inference_step(r50().eval(), x)),
            Case("cotnet50 channels_last", inference_step(big().eval().to(memory_format=cl), xcl)),
            Case("resnet50 channels_last", inference_step(r50().eval().to(memory_format=cl), xcl)),
            Case("cotnet50 optimize_for_inference", inference_step(cotsearch.optimize_for_inference(big()), x),
                 vs="resnet50 BN folded (fx)"),
            Case("resnet50 BN folded (fx)", inference_step(fx_folded(r50()), x)),
            Case("cotnet50 unfold aggregation", inference_step(big().eval(), x), unfold),
        ]
        if args.compile:
            cases += [Case("cotnet50 compiled", inference_step(torch.compile(big().eval()), x)),
                      Case("resnet50 compiled", inference_step(torch.compile(r50().eval()), x))]
        if args.onnx and device.type == "cpu":
            threads = torch.get_num_threads()
            cases += [Case("cotnet50 onnxruntime", onnx_step(cotsearch.optimize_for_inference(big()), x, threads)),
                      Case("resnet50 onnxruntime", onnx_step(fx_folded(r50()), x, threads))]
        return cases
    if group == "train-b8":
        x = torch.randn(8, 3, 224, 224, device=device)
        xcl = x.contiguous(memory_format=cl)
        return [Case("cotnet50", training_step(big(), x)), Case("resnet50", training_step(r50(), x)),
                Case("cotnet50 channels_last", training_step(big().to(memory_format=cl), xcl)),
                Case("resnet50 channels_last", training_step(r50().to(memory_format=cl), xcl)),
                Case("cotnet50 unfold aggregation", training_step(big(), x), unfold)]
    tiny = lambda name: cotsearch.build_model(cotsearch.load_spec(name)).to(device)  # noqa: E731
    if group == "tiny-train-b128":
        x = torch.randn(128, 1, 28, 28, device=device)
        xcl = x.contiguous(memory_format=cl)
        return [Case("cotnet_tiny", training_step(tiny("cotnet_tiny"), x, "adamw")),
                Case("resnet_tiny", training_step(tiny("resnet_tiny"), x, "adamw")),
                Case("cotnet_tiny channels_last", training_step(tiny("cotnet_tiny").to(memory_format=cl), xcl, "adamw")),
                Case("resnet_tiny channels_last", training_step(tiny("resnet_tiny").to(memory_format=cl), xcl, "adamw")),
                Case("cotnet_tiny unfold aggregation", training_step(tiny("cotnet_tiny"), x, "adamw"), unfold),
                Case("cotnet_tiny channels_last unfold aggregation",
                     training_step(tiny("cotnet_tiny").to(memory_format=cl), xcl, "adamw"), unfold)]
    if group.startswith("tiny-infer-b"):
        x = torch.randn(int(group[12:]), 1, 28, 28, device=device)
        return [Case("cotnet_tiny", inference_step(tiny("cotnet_tiny").eval(), x)),
                Case("resnet_tiny", inference_step(tiny("resnet_tiny").eval(), x)),
                Case("cotnet_tiny unfold aggregation", inference_step(tiny("cotnet_tiny").eval(), x), unfold)]
    raise SystemExit(f"unknown group {group}")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_group(cases: list[Case], device, rounds: int) -> None:
    calls = {}
    for case in cases:  # warm up, and pick how many calls make one round's measurement
        with case.context():
            for _ in range(2):
                case.step()
            sync(device)
            start = time.perf_counter()
            case.step()
            sync(device)
        calls[case.name] = max(1, round(ROUND_SECONDS / (time.perf_counter() - start)))
    for r in range(rounds):
        for case in cases if r % 2 == 0 else cases[::-1]:  # alternate the order: no case always follows another
            with case.context():
                sync(device)
                start = time.perf_counter()
                for _ in range(calls[case.name]):
                    case.step()
                sync(device)
            case.times_ms.append((time.perf_counter() - start) / calls[case.name] * 1e3)


def peak_step_memory(case: Case, device) -> int:
    """Bytes of tensors PyTorch allocates at the peak of one step, above what it held before."""
    with case.context():
        case.step()  # optimizer state exists before the measured step
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            case.step()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        with torch.profiler.profile(profile_memory=True, activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            case.step()
    held = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        # An op's own allocations net of its own frees ("self": its children count for
        # themselves); "[memory]" events are frees outside any op.
        held += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def summarise(group: str, cases: list[Case]) -> dict:
    base = {"infer": "resnet50", "train": "resnet50", "tiny": "resnet_tiny"}[group.split("-")[0]]
    pairs = {c.name: c for c in cases}
    out = {}
    for case in cases:
        if case.vs:
            reference = pairs[case.vs]
        elif case.name.endswith(" unfold aggregation"):  # how much slower the plain path is
            reference = pairs[case.name.removesuffix(" unfold aggregation")]
        else:  # the conv twin measured the same way, or the default conv model
            twin = case.name.replace("cotnet50", "resnet50").replace("cotnet_tiny", "resnet_tiny")
            reference = pairs.get(twin, pairs[base])
        ratios = [a / b for a, b in zip(case.times_ms, reference.times_ms)]  # round by round
        out[case.name] = {
            "median_ms": median(case.times_ms), "times_ms": [round(t, 3) for t in case.times_ms],
            "min_ms": min(case.times_ms), "max_ms": max(case.times_ms),
            "vs": reference.name, "ratio": median(case.times_ms) / median(reference.times_ms),
            "ratio_per_round": [round(r, 3) for r in ratios],
        }
    return out


def write_markdown(report: dict, path: Path) -> None:
    """The report as tables, with the machine and the method, for benchmarks/results/."""
    m = report["machine"]
    lines = [f"# benchmarks/speed.py on {report['device']}", "",
             f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, "
             f"Python {m['python']}, {m['platform']}" + (f", {m['gpu']}" if "gpu" in m else "") + ".",
             f"{report['rounds']} rounds per group.", "", "```", report["method"], "```"]
    for group, results in report["groups"].items():
        memory = any("peak_mb" in r for r in results.values())
        lines += ["", f"## {group}", "", "| model | median ms | ratio | against | per round |"
                  + (" peak MB | peak ratio |" if memory else ""),
                  "|---|---:|---:|---|---|" + ("---:|---:|" if memory else "")]
        for name, r in results.items():
            row = (f"| {name} | {r['median_ms']:.2f} | {r['ratio']:.2f}x | {r['vs']} | "
                   f"{', '.join(f'{x:.2f}' for x in r['ratio_per_round'])} |")
            if memory:
                row += f" {r['peak_mb']:.0f} | {r['peak_ratio']:.2f}x |"
            lines.append(row)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--groups", default="infer-b1,infer-b8,train-b8,tiny-train-b128,tiny-infer-b1,tiny-infer-b8")
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd models to the inference groups")
    parser.add_argument("--onnx", action="store_true", help="add onnxruntime to the inference groups (CPU)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    torch.manual_seed(0)
    report = {"machine": describe_machine(), "device": str(device), "rounds": args.rounds,
              "method": __doc__.split("Usage:")[0].strip(), "groups": {}}
    print(json.dumps(report["machine"]))
    for group in args.groups.split(","):
        cases = make_cases(group, device, args)
        run_group(cases, device, args.rounds)
        result = summarise(group, cases)
        if args.memory and "train" in group:
            for case in cases:
                result[case.name]["peak_mb"] = peak_step_memory(case, device) / 2**20
            base = cases[1].name
            for case in cases:
                result[case.name]["peak_ratio"] = result[case.name]["peak_mb"] / result[base]["peak_mb"]
        report["groups"][group] = result
        print(f"\n{group}")
        for name, r in result.items():
            memory = f"  peak {r['peak_mb']:7.1f} MB ({r['peak_ratio']:.2f}x)" if "peak_mb" in r else ""
            print(f"  {name:34s} {r['median_ms']:9.2f} ms  {r['ratio']:5.2f}x {r['vs']:24s}"
                  f" rounds {r['ratio_per_round']}{memory}")
        sys.stdout.flush()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        write_markdown(report, args.out.with_suffix(".md"))
        print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
