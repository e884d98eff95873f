"""The cost model: the paper's MACs, exact params, measured FLOPs, activations, latency."""

import json
import random
import time
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from timm.layers import BlurPool2d

import cotsearch
from cotsearch.arch.load import spec_from_data
from cotsearch.cost.analytic import estimate_cost
from cotsearch.cost.flops import measure_flops
from cotsearch.cost.latency import measure_latency, time_callable
from cotsearch.nn.layers import CoTLayer

from helpers import cli_here, preset_model, valid_specs

# The official counter's figures (GMACs), from the task's reference list.
PAPER_GMACS = [
    ("cotnet50", 224, 3.287), ("cotnext50_2x48d", 224, 4.328), ("se_cotnetd_50", 224, 4.089),
    ("cotnet101", 224, 6.116), ("cotnext101_2x48d", 224, 8.185), ("se_cotnetd_101", 224, 8.500),
    ("se_cotnetd_152", 256, 16.960), ("se_cotnetd_152", 320, 26.496),
]


@pytest.mark.parametrize("name, size, gmacs", PAPER_GMACS)
def test_analytic_macs_reproduce_the_official_counter(name, size, gmacs):
    assert estimate_cost(cotsearch.load_spec(name), size).macs / 1e9 == pytest.approx(gmacs, rel=0.005)


@pytest.mark.parametrize("name", cotsearch.list_presets())
def test_params_exact_and_measured_flops_agree_per_stage(name):
    model = preset_model(name)
    cost = estimate_cost(model.spec, 64)
    assert cost.params == sum(p.numel() for p in model.parameters())
    total, per_child = measure_flops(model, (64, 64), model.spec.in_chans)
    assert total / 2 == pytest.approx(cost.macs_conv, rel=0.01)
    for part in cost.parts[1:-1]:  # the stages
        assert per_child[part.name] / 2 == pytest.approx(part.macs_conv, rel=0.01)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_specs_params_exact_and_flops_agree(data):
    spec = spec_from_data(data, "random")
    model = cotsearch.build_model(spec)
    cost = estimate_cost(spec, 32)
    assert cost.params == sum(p.numel() for p in model.parameters())
    total, _ = measure_flops(model, (32, 32), spec.in_chans)
    assert total / 2 == pytest.approx(cost.macs_conv, rel=0.01)


@pytest.mark.parametrize("name, size", [("cotnet_tiny", (28, 28)), ("se_cotnetd_152", (64, 48)), ("cotnext50_2x48d", (40, 40))])
def test_activations_count_every_layer_output(name, size):
    """pycls' convention: elements of every conv, linear, pool (and aggregation) output."""
    model = preset_model(name).eval()
    seen = []
    counted = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d, torch.nn.AvgPool2d,
               torch.nn.AdaptiveAvgPool2d, BlurPool2d)
    for m in model.modules():
        if isinstance(m, counted):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out[0].numel()))
        if isinstance(m, CoTLayer):  # the aggregation's output has the layer's shape
            m.register_forward_hook(lambda mod, inp, out: seen.append(out[0].numel()))
    with torch.no_grad():
        model(torch.zeros(1, model.spec.in_chans, *size))
    assert estimate_cost(cotsearch.load_spec(name), size).acts == sum(seen)


def test_output_shapes_follow_the_model():
    model = preset_model("se_cotnetd_50").eval()
    cost = estimate_cost(model.spec, (96, 64))
    with torch.no_grad():
        feats = model.forward_features(torch.zeros(1, 3, 96, 64))
    assert cost.parts[-2].out_shape == tuple(feats.shape[1:])


def test_pricing_does_not_build_anything(monkeypatch):
    monkeypatch.setattr(torch.nn.Module, "__init__", lambda *a, **k: pytest.fail("built a module"))
    spec = cotsearch.load_spec("cotnet101")
    assert estimate_cost(spec).params == 38_272_048


def test_latency_is_measured_and_sane():
    lat = measure_latency(preset_model("cotnet_tiny"), batch_size=2, min_run_time=0.1)
    assert lat.median_ms > 0 and lat.iqr_ms >= 0 and lat.runs >= 1
    assert lat.input_size == (28, 28) and lat.device == "cpu" and lat.batch_size == 2


def test_noisy_timing_is_flagged_not_hidden():
    rng = random.Random(0)

    def jittery():  # 1 to 20 ms, at random: a machine that is busy with something else
        time.sleep(rng.uniform(0.001, 0.02))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, _, noisy = time_callable(jittery, torch.device("cpu"), min_run_time=0.1, max_rel_iqr=0.1, retries=1,
                                        max_run_time=0.3)
    assert noisy and any("noisy" in str(w.message) for w in caught)


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(cotsearch.CotsearchError, match="no CUDA device"):
        measure_latency(preset_model("cotnet_tiny"), device="cuda")


def test_profile_json_cli():
    """cotnet50's costs at 224 px without latency (timing a ResNet-50-sized net part by part
    took most of a minute), then cotnet_tiny's latency, part by part."""
    result = cli_here("profile", "cotnet50", "--json", "--no-latency")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["params"] == 22_222_416 and data["macs"] / 1e9 == pytest.approx(3.287, rel=0.005)
    assert data["macs_conv"] == data["measured_macs_conv"]
    assert [s["name"] for s in data["stages"]][:2] == ["stem", "layer1"] and data["latency_ms"] is None
    assert sum(s["params"] for s in data["stages"]) == data["params"]

    result = cli_here("profile", "cotnet_tiny", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["latency_ms"] > 0 and all(s["latency_ms"] > 0 for s in data["stages"])
