"""timm's model contract, as timm's own model tests check it, for presets and random specs:
the pretrained cfg against the model, the head, forward_intermediates and pruning, features_only
with every feature class, FX tracing (forward and backward) and TorchScript against eager."""

import copy
import math
import subprocess
import sys

import pytest
import timm
import torch
import torch.fx
from hypothesis import HealthCheck, given, settings
from PIL import Image
from timm.models import FeatureGraphNet, FeatureHookNet, FeatureListNet, group_parameters
from timm.models._features import FeatureGetterNet
from torch import nn

import cotsearch
from cotsearch.arch.load import spec_from_data
from cotsearch.arch.spec import StemSpec
from cotsearch.nn import timm_registry
from cotsearch.nn.layers import CoTLayer, aggregation, local_aggregate

from helpers import preset_model, valid_specs

pytestmark = [  # torch's own notices: scripting is deprecated (still timm's contract); a GraphModule's __init__
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system doesn't support instance-level:UserWarning"),
]

FEATURE_CLASSES = {"getter": FeatureGetterNet, "fx": FeatureGraphNet, "hook": FeatureHookNet, "list": FeatureListNet}
# (preset, input size): the two small presets at their own size, a large one at a small size.
PRESETS = [("cotnet_tiny", 28), ("resnet_tiny", 28), ("se_cotnetd_50", 64)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread runs them faster than two, which stall each other
    whenever other processes hold a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial norms: zero_init_last zeroes every residual branch, which would hide
    any difference inside the blocks."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def preset(name: str, size: int) -> tuple[nn.Module, torch.Tensor]:
    """A preset at `size` px with random norms, and a non-square batch of two for it."""
    model = randomize_norms(preset_model(name, input_size=size)).eval()
    return model, torch.randn(2, model.spec.in_chans, size, size - 4)


def expected_shapes(model, x) -> list[tuple[int, ...]]:
    """Every feature map's shape from feature_info: each stride rounds up."""
    h, w = x.shape[-2:]
    return [(len(x), f["num_chs"], math.ceil(h / f["reduction"]), math.ceil(w / f["reduction"]))
            for f in model.feature_info]


def assert_equal_lists(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def grads(model: nn.Module, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradient of every parameter that `out` depends on, by name."""
    names, params = zip(*model.named_parameters())
    found = torch.autograd.grad(out.square().mean(), params, allow_unused=True)
    return {name: g for name, g in zip(names, found) if g is not None}


def assert_grads_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal up to float rounding, relative to the largest gradient (some biases feed a BN:
    their true gradient is 0 and what is computed is rounding noise)."""
    assert got.keys() == expected.keys()
    scale = max(g.abs().max().item() for g in expected.values())
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-5 * scale, msg=name)


def check_cfg(model: nn.Module) -> None:
    """The pretrained cfg describes the model: input, final feature map, names, norms."""
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (model.spec.in_chans, model.spec.input_size, model.spec.input_size)
    in_chans, h, w = cfg["input_size"]
    with torch.no_grad():
        feats = model.eval().forward_features(torch.randn(1, in_chans, h, w))
    assert feats.shape[1:] == (model.num_features, *cfg["pool_size"])
    assert model.get_submodule(cfg["first_conv"]).in_channels == in_chans == len(cfg["mean"]) == len(cfg["std"])
    assert cfg["classifier"] == model.get_classifier(name_only=True)
    if model.num_classes:
        assert model.get_submodule(cfg["classifier"]).out_features == model.num_classes
    assert cfg["crop_mode"] == "center" and 0 < cfg["crop_pct"] <= 1 and cfg["interpolation"] == "bicubic"


def check_intermediates(model: nn.Module, x: torch.Tensor) -> None:
    """All feature maps by default, final features equal forward_features', picks by count,
    list and negative index, intermediates_only, stop_early that runs no later stage."""
    last = len(model.feature_info) - 1
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert [tuple(t.shape) for t in inter] == expected_shapes(model, x)
        assert_equal_lists(model.forward_intermediates(x, indices=2, intermediates_only=True), inter[-2:])
        assert_equal_lists(model.forward_intermediates(x, indices=[0, -1], intermediates_only=True),
                           [inter[0], inter[-1]])
        if last > 1:  # a stage to stop at before the last one
            ran = []
            hook = getattr(model, model.stage_names[-1]).register_forward_hook(lambda *args: ran.append(1))
            try:
                early, picked = model.forward_intermediates(x, indices=[last - 1], stop_early=True)
            finally:
                hook.remove()
            assert not ran and torch.equal(early, inter[last - 1])
            assert_equal_lists(picked, [inter[last - 1]])


def check_feature_extractors(model: nn.Module, x: torch.Tensor) -> None:
    """Each timm feature class wrapped round the model returns forward_intermediates' maps."""
    out_indices = tuple(range(len(model.feature_info)))
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=list(out_indices), intermediates_only=True)
        for cls in FEATURE_CLASSES.values():
            features = cls(copy.deepcopy(model), out_indices=out_indices).eval()
            assert features.feature_info.channels() == [t.shape[1] for t in expected]
            assert_equal_lists(features(x), expected)


def check_fx(model: nn.Module, x: torch.Tensor) -> None:
    """torch.fx traces through the CoT layers, recording the aggregation as one call that runs
    the eager dispatch; the graph gives eager's outputs exactly and its gradients, and scripts.
    In training, where eager code splits the CoT embedding's conv (the graph keeps the
    concatenation), every parameter still gets a gradient; timm's FX extractor keeps the CoT
    layers whole and gives eager's gradients exactly."""
    model.eval()
    traced = torch.fx.symbolic_trace(copy.deepcopy(model))
    cot_layers = sum(isinstance(m, CoTLayer) for m in model.modules())
    calls = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    assert calls.count(local_aggregate) == cot_layers
    assert not any(isinstance(traced.get_submodule(n.target), CoTLayer) for n in traced.graph.nodes
                   if n.op == "call_module")
    seen = []

    def spy(*args):
        seen.append(1)
        return aggregation.local_aggregate_dispatch(*args)

    with torch.no_grad(), aggregation.use_aggregation(spy):
        out = model(x)
        assert torch.equal(traced(x), out) and len(seen) == 2 * cot_layers
    torch.testing.assert_close(torch.jit.script(traced)(x), out, rtol=1e-4, atol=1e-5)
    # In float64: in float32 the two orders of the same sums differ by rounding, which some
    # random models amplify past the tolerance (4 of 80 seeds of one spec here); in float64
    # the same 80 agree to within 1e-10 of it.
    traced64, model64, x64 = copy.deepcopy(traced).double(), copy.deepcopy(model).double(), x.double()
    assert_grads_close(grads(traced64, traced64(x64)), grads(model64, model64(x64)))

    assert grads(traced.train(), traced(x)).keys() == dict(model.named_parameters()).keys()
    last = len(model.feature_info) - 1
    graph = FeatureGraphNet(copy.deepcopy(model), out_indices=(last,)).train()
    reference = copy.deepcopy(model).train()
    expected = grads(reference, reference.forward_intermediates(x, indices=[last], intermediates_only=True)[0])
    got = {name.removeprefix("graph_module."): g for name, g in grads(graph, graph(x)[0]).items()}
    assert got.keys() == expected.keys() and all(torch.equal(got[name], g) for name, g in expected.items())


def check_script(model: nn.Module, x: torch.Tensor) -> None:
    """The scripted model (its aggregation the pad-and-shift form) gives eager's outputs."""
    scripted = torch.jit.script(copy.deepcopy(model).eval())
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, overrides", [
    ("cotnet_tiny", {}),
    ("resnet_tiny", {"input_size": 33, "num_classes": 3}),
    ("se_cotnetd_50", {"input_size": 64}),
    ("cotnet50", {"input_size": 40, "in_chans": 1}),
])
def test_pretrained_cfg_follows_the_model_through_timm(name, overrides):
    """pool_size, input_size and the norms follow input_size / in_chans overrides and each stem;
    num_classes stays the weights' (timm adapts the classifier when loading); timm.data makes
    transforms from the cfg that give the model's input."""
    model = timm.create_model(name, **overrides)
    check_cfg(model)
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == cotsearch.load_spec(name).num_classes
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    image = Image.new("L" if model.spec.in_chans == 1 else "RGB", (75, 50))
    assert transform(image).shape == cfg["input_size"]


@pytest.mark.slow
def test_importing_cotsearch_makes_the_presets_timm_models():
    """As a timm user writes it, in fresh interpreters (both at once): `import cotsearch`
    before or after timm, then timm's own calls, with no warning (a preset registered twice
    would warn)."""
    code = """
import warnings
warnings.simplefilter("error")
net = timm.create_model("cotnet_tiny", num_classes=3)
print(type(net).__name__, net.num_classes, sorted(set(timm.list_models()) & set(cotsearch.list_presets())))
"""
    runs = [subprocess.Popen([sys.executable, "-c", imports + code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for imports in ("import cotsearch\nimport timm", "import timm\nimport cotsearch")]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        assert out.split(" ", 2) == ["CoTNet", "3", f"{sorted(cotsearch.list_presets())}\n"]


def test_the_callers_cfg_overlay_wins():
    model = timm.create_model("cotnet_tiny", input_size=40, pretrained_cfg_overlay={"crop_pct": 0.5})
    assert model.pretrained_cfg["crop_pct"] == 0.5 and model.pretrained_cfg["input_size"] == (1, 40, 40)


def test_head_contract():
    model, x = preset("cotnet_tiny", 28)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre_logits = model.forward_head(feats, pre_logits=True)
        assert pre_logits.shape == (2, model.head_hidden_size)
        assert torch.equal(model(x), model.get_classifier()(pre_logits))
        model.reset_classifier(0)
        assert model.num_classes == model.spec.num_classes == 0 and torch.equal(model(x), pre_logits)
        model.reset_classifier(0, "")
        assert torch.equal(model(x), feats)
        model.reset_classifier(3, "avg")
        assert model(x).shape == (2, 3) and model.spec.num_classes == 3
        headless = timm.create_model("cotnet_tiny", num_classes=0, global_pool="").eval()
        assert headless(x).shape == feats.shape


def test_factory_keywords_make_the_parameters_where_and_as_asked():
    """timm's models take device= and dtype= and have in_chans (timm 1.0.31's test_model_default_cfgs
    reads all three); CoTNet refused the keywords as unknown and lacked the attribute."""
    torch.manual_seed(0)
    plain = timm.create_model("cotnet_tiny", num_classes=10, in_chans=3)
    assert plain.in_chans == plain.spec.in_chans == 3
    torch.manual_seed(0)
    double = timm.create_model("cotnet_tiny", num_classes=10, in_chans=3, dtype=torch.float64)
    weights = double.state_dict()
    for name, value in plain.state_dict().items():  # the same initialisation, cast
        assert weights[name].dtype == (value.dtype if not value.is_floating_point() else torch.float64)
        assert torch.equal(weights[name], value.to(weights[name].dtype)), name
    meta = timm.create_model("cotnet50", device="meta", dtype=torch.bfloat16)
    assert {(t.device.type, t.dtype) for t in meta.parameters()} == {("meta", torch.bfloat16)}
    meta.eval().reset_classifier(5)  # a new head follows the network: device, dtype and mode
    assert (meta.fc.weight.device.type, meta.fc.weight.dtype, meta.fc.training) == ("meta", torch.bfloat16, False)
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    assert double.eval()(x).dtype == torch.float64


@pytest.mark.parametrize("name, size", PRESETS)
def test_presets_keep_the_contract(name, size):
    model, x = preset(name, size)
    check_cfg(model)
    check_intermediates(model, x)
    check_feature_extractors(model, x)
    check_fx(model, x)


@pytest.mark.parametrize("name", ["cotnet_tiny", "resnet_tiny"])
def test_script_matches_eager(name):
    model, x = preset(name, 28)
    check_script(model, x)


@pytest.mark.parametrize("coarse", [True, False])
def test_parameter_groups_go_by_depth(coarse):
    """timm's layer-wise learning-rate decay: the stem, then each stage (coarse) or block, then the head."""
    model = preset_model("cotnet_tiny")
    groups = list(group_parameters(model, model.group_matcher(coarse)).values())
    depth = len(model.stage_names) if coarse else len(model.plan.blocks)
    assert len(groups) == depth + 2 and groups[0][0] == "conv1.weight" and groups[-1] == ["fc.weight", "fc.bias"]
    assert sorted(name for group in groups for name in group) == sorted(name for name, _ in model.named_parameters())


def test_intermediates_refuse_other_formats_and_indices():
    model, x = preset("resnet_tiny", 28)
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")
    n = len(model.feature_info)
    for indices, message in (([n], rf"indices \[{n}\]: expected feature map indices in -{n}\.\.{n - 1}"),
                             ([-n - 1], "expected feature map indices"), ([], "expected feature map indices"),
                             (0, f"the last n feature maps need 1 <= n <= {n}"), (n + 1, "the last n feature maps")):
        with pytest.raises(ValueError, match=message):
            model.forward_intermediates(x, indices=indices)
        with pytest.raises(ValueError, match=message):
            model.prune_intermediate_layers(indices)


def test_grad_checkpointing_keeps_outputs_and_gradients(monkeypatch):
    model, x = preset("cotnet_tiny", 28)
    model.train()
    out = model(x)
    expected = grads(model, out)
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    model.set_grad_checkpointing()
    torch.testing.assert_close(model(x), out)
    assert len(calls) == len(model.plan.blocks)
    torch.testing.assert_close(grads(model, model(x)), expected)
    final, _ = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x))


def test_pruning_keeps_the_picked_features():
    model, x = preset("cotnet_tiny", 28)
    with torch.no_grad():
        _, inter = model.forward_intermediates(x)
        assert model.prune_intermediate_layers([1, -3]) == [1, 2]
        assert len(model.layer3) == len(model.layer4) == 0 and isinstance(model.fc, nn.Identity)
        assert model.num_features == model.head_hidden_size == model.feature_info[2]["num_chs"]
        assert torch.equal(model(x), inter[2])
        assert_equal_lists(model.forward_intermediates(x, indices=[1, 2], intermediates_only=True), inter[1:3])


def test_pruning_to_the_stem_drops_its_pool():
    spec = cotsearch.load_spec("cotnet_tiny").model_copy(update={"stem": StemSpec(type="classic", width=16)})
    model = randomize_norms(cotsearch.build_model(spec)).eval()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        stem = model.forward_intermediates(x, indices=[0], intermediates_only=True)[0]
        assert model.prune_intermediate_layers([-len(model.feature_info)]) == [0]
        assert isinstance(model.maxpool, nn.Identity) and torch.equal(model(x), stem)


@pytest.mark.parametrize("feature_cls", [*FEATURE_CLASSES, None])
def test_features_only_through_timm(feature_cls):
    """Every feature class timm.create_model offers; by default every feature map."""
    kwargs = {} if feature_cls is None else {"feature_cls": feature_cls}
    features = timm.create_model("cotnet_tiny", features_only=True, **kwargs).eval()
    assert type(features) is FEATURE_CLASSES[feature_cls or "list"]
    model = preset_model("cotnet_tiny")
    assert features.feature_info.channels() == [f["num_chs"] for f in model.feature_info]
    assert features.feature_info.reduction() == [f["reduction"] for f in model.feature_info]
    x = torch.randn(2, 1, 28, 24)
    with torch.no_grad():
        assert [tuple(o.shape) for o in features(x)] == expected_shapes(model, x)


def test_features_only_gives_every_map_of_a_preset_of_any_depth(monkeypatch):
    spec = cotsearch.load_spec("cotnet_tiny")
    monkeypatch.setattr(timm_registry, "load_spec", lambda name: spec.model_copy(update={"stages": spec.stages[:2]}))
    features = timm.create_model("cotnet_tiny", features_only=True)
    assert features.feature_info.channels() == [32, 64, 128]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_specs_keep_the_contract(data):
    model = randomize_norms(cotsearch.build_model(spec_from_data(data, "random"))).eval()
    x = torch.randn(2, model.spec.in_chans, 32, 32)  # the strategy's specs are valid at 32 px
    check_cfg(model)
    check_intermediates(model, x)
    check_feature_extractors(model, x)
    check_fx(model, x)
    check_script(model, x)
