"""Search-space files: validation with clear errors, sampling, pricing under budgets."""


import optuna
import pytest

from cotsearch.arch.load import load_spec
from cotsearch.cost.analytic import estimate_cost
from cotsearch.errors import SpecError
from cotsearch.search.confirm import planned_runs
from cotsearch.search.scaled_presets import reference_spec, scale_to_budget
from cotsearch.search.space import apply_params, load_space, price
from cotsearch.search.trial_types import TrialId, TrialKind

from helpers import SPACES, cli, write_cifar

GOOD = """
name: t
base: cotnet_tiny
params:
  stages.1.blocks: {choice: [cot, conv, [cot, conv]]}
  stages.1.cot.kernel_size: {choice: [3, 5], when: {stages.1.blocks: [cot, [cot, conv]]}}
  stages.2.depth: {int: [1, 3]}
  width_mult: {float: [0.5, 1.5], step: 0.25}
budgets: {max_macs: 30.0e+6}
"""


def space_from(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(str(path))


@pytest.mark.parametrize("name", ["cot_stages", "cot_block", "cot_placement", "cot_design", "imagenet_cot_stages"])
def test_shipped_spaces_are_valid(name):
    space = load_space(SPACES / f"{name}.yaml")
    assert space.params and space.objectives[0].metric == "val_top1"
    if space.train.data == "fashion-mnist":  # the others' data is not on this machine
        for reference in space.search.references:  # each resolves, a scaled one within the budget
            cost = estimate_cost(reference_spec(space, reference))
            assert "@budget" not in reference or all(value <= 0 for value in space.constraints(cost))


@pytest.mark.parametrize("change, message", [
    ("stages.9.blocks: {choice: [cot]}", "params.stages.9.blocks: value 'cot' does not fit the base spec: stages.9: expected an index below 4"),
    ("stages.1.colour: {choice: [red]}", "stages.1.colour: no such field in the spec"),
    ("stages.1.depth: {choice: [0]}", "stages.1.depth: Input should be greater than or equal to 1"),
    ("stages.1.depth: {int: [3, 1]}", "range [3, 1] is empty"),
    ("stages.1.depth: {int: [1, 3], choice: [1]}", "give exactly one of choice, int, float (got choice, int)"),
    ("stages.1.depth: {int: [1, 3], when: {later: 1}}", "'later' is not an earlier parameter"),
    ("stages.1.depth: {ints: [1, 3]}", "ints: unknown key; did you mean 'int'?"),
    # what Optuna refuses, or changes, when a trial samples the range: refused at load, before Ray starts
    ("stages.3.depth: {int: [1, 3], step: .inf}", "params.stages.3.depth: step inf must be a finite number"),
    ("width_mult: {float: [0.5, .inf]}", "params.width_mult: range [0.5, inf]: low and high must be finite numbers"),
    ("width_mult: {float: [0.5, .nan]}", "params.width_mult: range [0.5, nan]: low and high must be finite numbers"),
    ("width_mult: {float: [0.0, 1.5], log: true}", "params.width_mult: log: true needs low > 0 (got 0.0)"),
    ("stages.3.depth: {int: [0, 3], log: true}", "params.stages.3.depth: log: true needs low >= 1 (got 0)"),
    ("stages.3.depth: {int: [1, 3], log: true, step: 2}", "params.stages.3.depth: give step or log: true, not both"),
    ("stages.3.depth: {int: [1, 3], step: 1.5}", "params.stages.3.depth: step 1.5: an int range takes a whole step"),
    ("width_mult: {float: [0.5, 1.4], step: 0.25}",
     "params.width_mult: range [0.5, 1.4] is not a whole number of steps of 0.25: Optuna would sample up to 1.25 only"),
    ("stages.3.cot.kernel_size: {choice: [3, 5], step: 2}", "params.stages.3.cot.kernel_size: step: only an int or float range"),
    ("se_ratio: {float: [0.0, 0.5], step: 1.0e-300}",
     "params.se_ratio: step 1e-300 is too small for the range [0.0, 0.5]: Optuna cannot count its steps"),
    # width_mult is a positive number that leaves every stage a channel per group and head
    ("width_mult: {float: [0.0, 1.5]}", "params.width_mult: value 0.0 does not fit the base spec: width_mult 0.0: "
                                        "expected a positive number"),
    ("width_mult: {choice: [-1, 1]}", "width_mult -1: expected a positive number"),
    ("width_mult: {choice: [wide, 1]}", "width_mult 'wide': expected a positive number"),
    ("width_mult: {float: [0.25, 1.5]}", "params.width_mult: value 0.25 does not fit the base spec: width_mult 0.25 rounds "
                                         "stages.0.planes 16 to 0 (planes are multiples of 8), fewer than one channel"),
    # a condition that could never hold
    ("stages.1.cot.heads: {choice: [2, 4], when: {stages.2.depth: 7}}",
     "params.stages.1.cot.heads.when: 7 is not in the range of stages.2.depth [1, 3], so the condition could never hold"),
    ("stages.1.cot.heads: {choice: [2, 4], when: {stages.1.blocks: []}}",
     "params.stages.1.cot.heads.when: no value of stages.1.blocks is given, so the condition could never hold"),
])
def test_bad_params_are_refused_with_their_path(tmp_path, change, message):
    text = GOOD.replace("  width_mult: {float: [0.5, 1.5], step: 0.25}", "  " + change)
    with pytest.raises(SpecError) as err:
        space_from(tmp_path, text)
    assert message in str(err.value) and str(err.value).startswith(str(tmp_path / "space.yaml"))


def test_other_bad_space_files(tmp_path):
    with pytest.raises(SpecError, match="objectives: the first objective must be"):
        space_from(tmp_path, GOOD + "objectives: [{metric: macs, direction: minimize}]\n")
    with pytest.raises(SpecError, match="search.sampler: Input should be 'tpe', 'nsga2' or 'random'"):
        space_from(tmp_path, GOOD + "search: {sampler: cmaes}\n")
    with pytest.raises(SpecError, match="budgets.max_macs: Input should be greater than 0"):
        space_from(tmp_path, GOOD.replace("max_macs: 30.0e+6", "max_macs: -1"))
    with pytest.raises(SpecError, match="base: .*no such preset or file"):
        space_from(tmp_path, GOOD.replace("base: cotnet_tiny", "base: cotnet_tinyy"))


def test_width_mult_and_dotted_paths():
    base = load_space(SPACES / "cot_block.yaml").base_spec()
    spec = apply_params(base, {"width_mult": 1.5, "stages.2.cot.kernel_size": 5, "stages.1.blocks": ["cot", "conv"]})
    assert [s.planes for s in spec.stages] == [24, 48, 96, 192]
    assert spec.stages[2].cot.kernel_size == 5 and spec.stages[1].block_kinds == ["cot", "conv"]


def test_conditional_choices_follow_their_condition(tmp_path):
    space = space_from(tmp_path, GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        values = space.decode(space.sample(trial))
        has_kernel = "stages.1.cot.kernel_size" in values
        assert has_kernel == (values["stages.1.blocks"] != "conv")
        seen.add(str(values["stages.1.blocks"]))
        study.tell(trial, 0.0)
    assert seen == {"cot", "conv", "['cot', 'conv']"}


def test_pricing_flags_budget_breakers_fast(tmp_path):
    space = space_from(tmp_path, GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    infeasible = 0
    for _ in range(200):
        trial = study.ask()
        spec, cost, constraints, reason = price(space, space.sample(trial))
        assert (reason is not None) == (cost.macs > 30e6)
        assert constraints == [pytest.approx(cost.macs / 30e6 - 1)]
        assert cost.macs == estimate_cost(spec, 28).macs  # priced at the data's 28 px
        infeasible += reason is not None
        study.tell(trial, 0.0)
    assert infeasible > 0


@pytest.mark.parametrize("section, field", [
    ("budgets", "max_macs: '30.0e+6'"),
    ("train", "epochs: '3'"),
    ("train", "lr: 1e-3"),  # YAML 1.1 reads 1e-3 (no dot) as a string
    ("train", "label_smoothing: '0.1'"),
    ("search", "trials: '16'"),
    ("search", "cpus_per_trial: '1'"),
])
def test_a_string_where_a_number_belongs_is_refused_in_every_section(tmp_path, section, field):
    key = field.split(":")[0]
    text = GOOD.replace("budgets: {max_macs: 30.0e+6}\n", "") + f"{section}: {{{field}}}\n"
    with pytest.raises(SpecError, match=rf"{section}\.{key}: Input should be a valid (number|integer)"):
        space_from(tmp_path, text)


def test_trials_are_priced_for_the_data_they_train_on(tmp_path):
    """cotnet_tiny has 1 input channel at 28 px; on CIFAR's RGB images every sample is
    priced, and so trained, with 3 channels at 32 px."""
    data = tmp_path / "cifar"
    write_cifar(data)
    space = space_from(tmp_path, GOOD + f"train: {{data: 'cifar10:{data}', val_size: 10}}\n")
    assert space.base_spec().in_chans == 1
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    spec, cost, _, _ = price(space, space.sample(study.ask()))
    assert (spec.in_chans, spec.input_size, spec.num_classes) == (3, 32, 10)
    assert cost.macs == estimate_cost(spec).macs and cost.input_size == (32, 32)
    assert cost.parts[0].params == estimate_cost(spec).parts[0].params == 3 * 32 * 9 + 2 * 32  # RGB stem conv + BN


@pytest.mark.parametrize("change, message", [
    ("name: t", "name: String should match pattern"),
    ("  stages.1.cot.kernel_size: {choice: [3, 5], when: {stages.1.blocks: [cot, [cot, conv]]}}",
     "when: 'se_conv' is not one of the choices of stages.1.blocks"),
])
def test_names_that_escape_and_conditions_that_never_hold_are_refused(tmp_path, change, message):
    bad = {"name: t": "name: ../../x",
           "  stages.1.cot.kernel_size: {choice: [3, 5], when: {stages.1.blocks: [cot, [cot, conv]]}}":
           "  stages.1.cot.kernel_size: {choice: [3, 5], when: {stages.1.blocks: [cot, se_conv]}}"}[change]
    with pytest.raises(SpecError, match=message):
        space_from(tmp_path, GOOD.replace(change, bad))


def test_a_misspelt_reference_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(SpecError, match="search.references: 'cotnet_tny' is not a preset; did you mean 'cotnet_tiny'"):
        space_from(tmp_path, GOOD + "search: {references: [cotnet_tny]}\n")
    with pytest.raises(SpecError, match="search.references: 'resnet_tny@budget' is not a preset; did you mean "
                                        "'resnet_tiny@budget'"):
        space_from(tmp_path, GOOD + "search: {references: [resnet_tny@budget]}\n")
    with pytest.raises(SpecError, match="search.references: 'cotnet_tiny@budgt' is not a preset; did you mean "
                                        "'cotnet_tiny'"):
        space_from(tmp_path, GOOD + "search: {references: [cotnet_tiny@budgt]}\n")
    with pytest.raises(SpecError, match="search.references: '@budget' is not a preset; presets: "):
        space_from(tmp_path, GOOD + "search: {references: ['@budget']}\n")
    with pytest.raises(SpecError, match="search.references: cotnet_tiny@budget: named twice"):
        space_from(tmp_path, GOOD + "search: {references: [cotnet_tiny@budget, resnet_tiny, cotnet_tiny@budget]}\n")


def test_a_reference_scaled_to_the_budget_is_the_preset_scaled_to_fit_it(tmp_path):
    space = space_from(tmp_path, GOOD + "search: {references: [cotnet_tiny, resnet_tiny@budget]}\n")
    plain, scaled = (reference_spec(space, name) for name in space.search.references)
    assert plain == space.data_shape().apply(load_spec("cotnet_tiny"))
    assert scaled == scale_to_budget(space, "resnet_tiny").spec and scaled.name == "resnet_tiny-x0.92"
    assert estimate_cost(scaled).macs <= 30.0e6 < estimate_cost(space.data_shape().apply(load_spec("resnet_tiny"))).macs
    # The confirmation trains it like any reference: its id names it as the space does, and reads back.
    runs = [c for c in planned_runs(space, []) if c.id.kind == TrialKind.REFERENCE]
    assert [str(c.id) for c in runs] == [f"ref-{name}-s{seed}" for name in ("cotnet_tiny", "resnet_tiny@budget")
                                         for seed in (1, 2, 3)]
    assert runs[3].spec == scaled and TrialId.parse(str(runs[3].id)) == runs[3].id


@pytest.mark.parametrize("budgets, references, message", [
    ("", "[cotnet_tiny@budget]", "search.references: cotnet_tiny@budget: t has no budget to scale the preset to"),
    ("budgets: {max_macs: 30.0e+6, max_latency_ms: 50}\n", "[cotnet_tiny@budget]",
     "search.references: cotnet_tiny@budget: t has a latency budget, which a preset cannot be scaled to without "
     "measuring; budget the space by max_macs or max_params only, or name the preset unscaled"),
    ("budgets: {max_macs: 1.0e+5}\n", "[cotnet_tiny, resnet_tiny@budget]",
     "search.references: resnet_tiny@budget: no width from 0.015625x to 4x fits t's budgets"),
    # cotnet_tiny costs 26.74 M; under 26.8 M no wider scaling fits, so both names are one network
    ("budgets: {max_macs: 26.8e+6}\n", "[cotnet_tiny, cotnet_tiny@budget]",
     "search.references: cotnet_tiny and cotnet_tiny@budget are the same network (the budget leaves no room to "
     "widen it); name one of them"),
])
def test_a_reference_that_cannot_be_scaled_stops_tune_before_any_work(tmp_path, budgets, references, message):
    space = GOOD.replace("budgets: {max_macs: 30.0e+6}\n", budgets) + f"search: {{references: {references}}}\n"
    (tmp_path / "space.yaml").write_text(space)
    result = cli("tune", tmp_path / "space.yaml", "--out", tmp_path / "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {message}"
    assert not (tmp_path / "run").exists()


def test_a_yaml_bomb_space_is_refused(tmp_path):
    bomb = "".join(f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
                   for a, b in zip("abcdef", "bcdefg"))
    with pytest.raises(SpecError, match="expands to"):
        space_from(tmp_path, "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + bomb)


def test_a_copy_with_another_recipe_and_base_derives_its_own_trial_base(tmp_path):
    """model_copy(update=...) does not validate: what the space derived from its old recipe
    and base (the data's shape, the base spec, the trial base) must not carry over."""
    space = space_from(tmp_path, GOOD)
    assert (space.trial_base().name, space.trial_base().in_chans, space.data_shape().input_size) == ("cotnet_tiny", 1, 28)
    data = tmp_path / "cifar"
    write_cifar(data)
    copy = space.model_copy(update={"train": space.train.model_copy(update={"data": f"cifar10:{data}"}),
                                    "base": "resnet_tiny"})
    fitted = copy.trial_base()
    assert (fitted.name, fitted.in_chans, fitted.input_size, fitted.num_classes) == ("resnet_tiny", 3, 32, 10)
    assert fitted == copy.data_shape().apply(load_spec("resnet_tiny"))
    assert space.trial_base().name == "cotnet_tiny" and space.trial_base().in_chans == 1  # the original keeps its own
    assert copy != space and copy.model_copy() == copy
