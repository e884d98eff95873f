"""The package's layers: imports only go downward, and what needs no model needs no torch."""

import ast
import subprocess
import sys

import pytest

from helpers import REPO, SPACES

PACKAGE = REPO / "cotsearch"
# Each folder (or top-level module) may import only from layers of a lower or equal rank.
RANKS = {"errors": 0, "files": 0, "stats": 0, "arch": 1, "nn": 2, "data": 2, "cost": 3, "train": 4, "export": 5,
         "process": 6, "search": 7, "report": 8, "bench": 8, "cli": 9}
HEAVY = ("torch", "timm", "ray", "torchvision")


def layer_of(module: str) -> str:
    return module.split(".")[1]


def imports_of(path) -> set[str]:
    """Every cotsearch module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cotsearch."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("cotsearch.")}
    return found


def test_every_module_is_in_a_layer():
    modules = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert modules == set(RANKS)


def test_imports_only_go_down_the_layers():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue  # the lazy public API names every layer, importing none
        here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        upward += [f"{path.relative_to(REPO)} imports {m}" for m in imports_of(path) if RANKS[layer_of(m)] > RANKS[here]]
    assert not upward


def test_no_module_imports_a_librarys_private_module():
    """A library's `_`-prefixed modules and names are not its API and change without notice."""
    private = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and not node.module.startswith("cotsearch"):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if not alias.name.startswith("cotsearch")]
            else:
                continue
            private += [f"{path.relative_to(REPO)} imports {name}" for name in names
                        if any(part.startswith("_") for part in name.split(".")[1:])]
    assert not private


def modules_loaded_by(code: str, says: str = "") -> set[str]:
    """The heavy libraries a fresh interpreter has loaded after running `code` (whose stderr
    must hold `says`)."""
    probe = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0 and says in result.stderr, result.stderr
    last = result.stdout.strip().splitlines()[-1].split()
    assert last[0] == "loaded:", result.stdout[-300:]
    return set(last[1:])


def cli_code(*args, exit_code: int = 0) -> str:
    return ("import sys\nfrom cotsearch.cli import main\n"
            f"sys.argv = ['cotsearch', *{list(args)!r}]\ntry:\n    main()\n"
            f"except SystemExit as e:\n    assert (e.code or 0) == {exit_code}, e.code")


@pytest.mark.parametrize("args", [["--help"], ["presets"], ["schema"], ["analyze", "--help"], ["profile", "cotnet50", "--analytic"],
                                  ["profile", "se_cotnetd_152", "--analytic", "--json", "--input-size", "320"]])
def test_commands_that_build_no_model_import_no_torch(args):
    assert modules_loaded_by(cli_code(*args)) == set()


@pytest.mark.parametrize("args, message", [
    (["export-onnx", "missing.safetensors", "-o", "a.onnx"], "missing.safetensors: no such model file"),
    (["export-onnx", "README.md", "-o", "no/such/dir/a.onnx"], "cannot write: no such directory no/such/dir"),
    (["convert", "missing.pth", "--preset", "cotnet50", "-o", "a.safetensors"], "missing.pth: no such checkpoint file"),
    (["convert", "missing.pth", "--preset", "cotnet500", "-o", "a.safetensors"], "--preset cotnet500: unknown preset"),
])
def test_mistakes_in_commands_that_need_torch_are_reported_before_it_loads(args, message):
    assert modules_loaded_by(cli_code(*args, exit_code=2), says=message) == set()


def test_validating_and_pricing_specs_and_spaces_imports_no_torch():
    code = f"""
import optuna
import cotsearch
from cotsearch.search.space import load_space, price
spec = cotsearch.load_spec("cotnet50")
assert cotsearch.estimate_cost(spec).params == 22_222_416
space = load_space({str(SPACES / "cot_block.yaml")!r})
study = optuna.create_study()
trial = study.ask()
priced = price(space, space.sample(trial))
assert priced[1].macs > 0
"""
    assert modules_loaded_by(code) == set()


def test_the_api_loads_the_heavy_layers_on_demand():
    assert modules_loaded_by("import cotsearch\ncotsearch.build_model") >= {"torch", "timm"}


def test_the_search_and_sweep_drivers_leave_torch_to_the_workers():
    """The drivers never train: they start without torch and timm (a trial imports them in its worker)."""
    assert modules_loaded_by("import cotsearch.search.runner, cotsearch.bench.sweep_runner") == {"ray"}


def test_proxies_of_a_space_load_no_ray():
    """`cotsearch proxies SPACE` labels each spec by its choices: formatting them needs no Ray.
    (Here its data is missing: the command stops once it has imported what it runs with.)"""
    args = ["proxies", str(SPACES / "cot_block.yaml"), "--data", "fashion-mnist:/no/such/dir"]
    loaded = modules_loaded_by(cli_code(*args, exit_code=2), says="/no/such/dir: no such folder")
    assert "torch" in loaded and "ray" not in loaded


def test_the_trial_and_the_sweep_rows_need_no_ray():
    """What lets a sweep's rows train where Ray is not installed (experiments/cot_placement_bench)."""
    loaded = modules_loaded_by("import cotsearch.search.trial, cotsearch.bench.sweep")
    assert "ray" not in loaded and "torch" in loaded


def test_analysing_a_committed_benchmark_loads_no_ray():
    """The simulator builds the search's own Optuna samplers (cotsearch.search.sampler) without Ray."""
    bench = REPO / "experiments" / "cot_placement_bench"
    code = f"""
from pathlib import Path
from cotsearch.bench.simulate import simulate
from cotsearch.bench.table import Bench, read_space
bench = Bench.load(Path({str(bench / "search")!r}), Path({str(bench / "reference")!r}))
chosen = simulate(bench, read_space(Path({str(bench / "search")!r})), "tpe", 12, 2)
assert chosen.shape == (2, 12)
"""
    assert not modules_loaded_by(code) & {"ray", "torch"}


def test_no_folder_holds_more_than_a_quarter_of_the_package():
    lines = {}
    for path in PACKAGE.rglob("*.py"):
        folder = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        lines[folder] = lines.get(folder, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    assert max(lines.values()) / total < 0.27, {k: f"{v / total:.0%}" for k, v in sorted(lines.items())}
