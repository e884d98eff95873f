"""Specs: every inconsistent value refused with a message naming its field; YAML round
trips; random valid specs always build."""

import copy

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings

import cotsearch
from cotsearch.arch.load import load_spec, spec_from_data
from cotsearch.errors import SpecError

from helpers import valid_specs

BASE = {
    "in_chans": 1, "num_classes": 10, "input_size": 28,
    "stem": {"type": "small", "width": 16},
    "stages": [{"depth": 2, "planes": 16, "stride": 1, "blocks": "cot"},
               {"depth": 1, "planes": 32, "stride": 2, "blocks": ["cot", "conv"]}],
}


def with_change(path: str, value):
    """BASE with the value at a dotted path set (or, with value=DELETE, removed)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()

BAD_SPECS = [
    ("depth below 1", with_change("stages.0.depth", 0), "stages.0.depth: Input should be greater than or equal to 1"),
    ("even kernel", with_change("stages.0.cot.kernel_size", 4), "stages.0.cot.kernel_size: must be odd"),
    ("1x1 window", with_change("stages.0.cot.kernel_size", 1), "stages.0.cot.kernel_size: Input should be greater than or equal to 3"),
    ("heads not dividing the width", with_change("stages.0.cot.heads", 5), "cot.heads 5 must divide the width 16"),
    ("key groups not dividing the width", with_change("stages.1.cot.key_groups", 3), "cot.key_groups 3 must divide the width 32"),
    ("unknown key with a suggestion", with_change("stagez", []), "stagez: unknown key; did you mean 'stages'?"),
    ("unknown nested key", with_change("stages.0.cot.kernal_size", 3), "stages.0.cot.kernal_size: unknown key; did you mean 'kernel_size'?"),
    ("unknown activation", with_change("act", "swishy"), "act: Input should be 'relu'"),
    ("missing stages", with_change("stages", DELETE), "stages: required field is missing"),
    ("empty stages", with_change("stages", []), "stages: List should have at least 1 item"),
    ("string for an int", with_change("stages.0.depth", "three"), "stages.0.depth: Input should be a valid integer"),
    ("stride 3", with_change("stages.0.stride", 3), "stages.0.stride: Input should be 1 or 2"),
    ("unknown block kind", with_change("stages.0.blocks", "attention"), "stages.0.blocks"),
    ("empty pattern", with_change("stages.0.blocks", []), "the pattern is empty"),
    ("unknown stem", with_change("stem.type", "huge"), "stem.type: Input should be 'classic', 'deep' or 'small'"),
    ("heads vs cardinality", with_change("stages.1", {"depth": 1, "planes": 32, "cardinality": 2, "cot": {"heads": 1}}),
     "cot.heads 1 must be a multiple of cardinality 2"),
    ("dropout of 1.5", with_change("drop_rate", 1.5), "drop_rate: Input should be less than 1"),
    ("no channels", with_change("stages.0.base_width", 1), "gives no channels"),
    ("blurpool on a 1 px map", {**with_change("input_size", 8), "stride_mode": "blurpool",
                                "stages": [{"depth": 1, "planes": 16, "stride": 2}] * 5}, "blurpool cannot stride it"),
    ("width too small for default heads", with_change("stages.0.planes", 4), "cot.heads: width 4 // 8 is 0"),
]


@pytest.mark.parametrize("data, message", [(d, m) for _, d, m in BAD_SPECS], ids=[n for n, _, _ in BAD_SPECS])
def test_bad_spec_is_refused_with_its_field(data, message):
    with pytest.raises(cotsearch.SpecError) as err:
        spec_from_data(data, "spec.yaml")
    text = str(err.value)
    assert text.startswith("spec.yaml: ") and "\n" not in text
    assert message in text


@pytest.mark.parametrize("content, message", [
    (b"stages: [\n  {depth: 2", "invalid YAML at line"),
    (b"- 1\n- 2\n", "expected a mapping of spec fields"),
    (b"stages: !!python/object/apply:os.system ['echo hi']\n", "invalid YAML"),
    (b"name: caf\xe9\n", "not UTF-8"),
])
def test_bad_yaml_file_is_refused(tmp_path, content, message):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(cotsearch.SpecError, match=message):
        load_spec(path)


def test_missing_file_and_unknown_preset():
    with pytest.raises(cotsearch.SpecError, match="no such file"):
        load_spec("does/not/exist.yaml")
    with pytest.raises(cotsearch.SpecError, match="did you mean 'cotnet50'"):
        load_spec("cotnet5")


@pytest.mark.parametrize("name", cotsearch.list_presets())
def test_presets_round_trip_through_yaml(name, tmp_path):
    spec = load_spec(name)
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    again = load_spec(path)
    assert again == spec and again.spec_hash() == spec.spec_hash()
    assert again.to_yaml() == spec.to_yaml()


def test_defaults_are_written_out():
    dumped = yaml.safe_load(load_spec("cotnet_tiny").to_yaml())
    assert dumped["stages"][0]["cot"] == {"kernel_size": 3, "heads": None, "key_groups": None,
                                          "attn_reduction": 2, "fusion_reduction": 4}
    assert dumped["stem"]["pool"] is False  # resolved from the small stem's default


def test_hash_ignores_the_name_only():
    spec = load_spec("cotnet_tiny")
    assert spec.model_copy(update={"name": "other"}).spec_hash() == spec.spec_hash()
    assert spec.model_copy(update={"act": "silu"}).spec_hash() != spec.spec_hash()


def test_json_schema_describes_the_fields():
    schema = cotsearch.BackboneSpec.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "stages" in schema["required"]
    assert "kernel_size" in schema["$defs"]["CoTSpec"]["properties"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_valid_specs_build_run_and_round_trip(data):
    spec = spec_from_data(data, "random")
    assert spec_from_data(yaml.safe_load(spec.to_yaml()), "again") == spec
    model = cotsearch.build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(1, spec.in_chans, 32, 32))
    assert out.shape == (1, spec.num_classes if spec.num_classes else spec.num_features)


def test_a_stride_of_true_is_refused_like_a_depth_of_true():
    stage = {"depth": 1, "planes": 16}
    for field in ("stride", "depth"):
        with pytest.raises(SpecError, match=rf"stages\.0\.{field}"):
            spec_from_data({"stages": [{**stage, field: True}]}, "t")


def test_the_same_network_written_differently_has_one_hash():
    spec = load_spec("cotnet_tiny")
    data = yaml.safe_load(spec.to_yaml())
    data["stages"][0]["blocks"] = ["cot"]  # a pattern of one
    data["stages"][1]["blocks"] = ["cot", "cot"]
    data["stages"][2]["cot"]["heads"] = spec.stages[2].width // 8  # the default, written out
    data["se_ratio"] = -0.0
    assert spec_from_data(data, "same").spec_hash() == spec.spec_hash()
    data["stages"][3]["blocks"] = "conv"
    assert spec_from_data(data, "other").spec_hash() != spec.spec_hash()


@pytest.mark.parametrize("text, message", [
    ("stages: [{depth: 1, planes: 16}]\nact: relu\nact: silu\n", "duplicate key 'act'"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n" for a, b in zip("abcde", "bcdef")),
     # the mapping, 6 keys, then lists of 11, 111, ..., 1,111,111 values (each 1 + 10 of the last)
     "expands to 1,234,573 values"),
])
def test_yaml_traps_are_refused(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_spec(path)
