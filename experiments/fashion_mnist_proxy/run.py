"""Proxy training on Fashion-MNIST: test top-1 after 1 and after 5 epochs, and training
throughput, for cotnet_tiny (CoT in every stage) and resnet_tiny (the same layout with 3x3
convs), with `cotsearch train`'s defaults (AdamW 4e-3, batch 64, cosine, label smoothing 0.1,
no augmentation), seed 0, on the full 55,000-image training split. One 5-epoch run per model
(cosine over the 5 epochs), its test top-1 taken after every epoch (the test set plays no part
in training). Nothing else should run on the machine meanwhile: throughput is measured.
Writes results.json and results.md.

Usage: python experiments/fashion_mnist_proxy/run.py [--epochs 5] [--models cotnet_tiny resnet_tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
from common import describe_machine  # noqa: E402

from cotsearch.data.load import load_data  # noqa: E402
import cotsearch  # noqa: E402
from cotsearch.train.config import TrainConfig  # noqa: E402
from cotsearch.train.loop import evaluate, init_model, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["cotnet_tiny", "resnet_tiny"])
    args = parser.parse_args()
    data = load_data("fashion-mnist")
    machine = describe_machine()
    print("machine:", json.dumps(machine), "|", data.describe(), flush=True)
    runs = []
    for name in args.models:
        config = TrainConfig(epochs=args.epochs, seed=0, device="cpu")
        model = init_model(data.shape.apply(cotsearch.load_spec(name)), seed=config.seed)
        started = time.time()
        per_epoch = []

        def on_epoch(m, model=model, per_epoch=per_epoch, config=config, name=name):
            _, test_top1 = evaluate(model, data.test, config, torch.device("cpu"))
            model.train()
            per_epoch.append({"epoch": m.epoch, "val_top1": m.val_top1, "test_top1": test_top1,
                              "train_images_per_s": m.train_images_per_s})
            print(f"  {name} epoch {m.epoch}: val {m.val_top1:.4f}, test {test_top1:.4f}, "
                  f"{m.train_images_per_s:.0f} img/s", flush=True)

        train(model, data, config, on_epoch=on_epoch, test=False)
        runs.append({"model": name, "params": sum(p.numel() for p in model.parameters()), "epochs": per_epoch,
                     "wall_s": time.time() - started})
    (HERE / "results.json").write_text(json.dumps({"machine": machine, "data": data.describe(), "runs": runs}, indent=2) + "\n")
    lines = ["| model | test top-1 after 1 epoch | after 5 epochs | train images/s (mean) | wall time |",
             "|---|---|---|---|---|"]
    for r in runs:
        first, last = r["epochs"][0], r["epochs"][-1]
        speed = sum(e["train_images_per_s"] for e in r["epochs"]) / len(r["epochs"])
        lines.append(f"| {r['model']} | {first['test_top1']:.2%} | {last['test_top1']:.2%} | {speed:.0f} | "
                     f"{r['wall_s'] / 60:.1f} min |")
    (HERE / "results.md").write_text(
        f"# Fashion-MNIST proxy training\n\nMeasured with `python {Path(__file__).relative_to(HERE.parents[1])}` on "
        f"{machine['cpu']} ({machine['cores']} cores, {machine['torch_threads']} torch threads), torch {machine['torch']}, "
        f"nothing else running. {data.describe()}. One {args.epochs}-epoch run per model (cosine over all "
        "epochs); test top-1 taken after each epoch.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
