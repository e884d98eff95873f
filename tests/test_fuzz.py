"""Fuzzing: malformed specs and search spaces must give a SpecError (one line, naming the
file and field), never another exception, a hang or a built model. Thousands of inputs run
in-process; a sample also goes through the command line for its exit code."""

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cotsearch
from cotsearch.arch.load import load_spec
from cotsearch.errors import SpecError
from cotsearch.search.space import load_space

from helpers import SPACES, cli

VALID_SPEC = yaml.safe_load(cotsearch.load_spec("cotnet_tiny").to_yaml())
VALID_SPACE = yaml.safe_load((SPACES / "cot_stages.yaml").read_text())

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def paths(node, prefix=()):
    """Every path to a value in a nested dict / list document."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw, valid):
    """A valid document with one to three mutations: a value replaced by junk or by an
    extreme number, a key removed, or an unknown key added."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        all_paths = [p for p in paths(doc) if p]
        if not all_paths:
            break
        path = draw(st.sampled_from(all_paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["junk", "extreme", "delete", "unknown"]))
        if kind == "junk":
            parent[path[-1]] = draw(junk)
        elif kind == "extreme":
            parent[path[-1]] = draw(st.sampled_from([0, -1, 10**12, 1e300, -1e-300, "", [], {}]))
        elif kind == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(junk)
    return doc


class NoBuild:
    def __enter__(self):
        self.original = cotsearch.CoTNet.__init__
        cotsearch.CoTNet.__init__ = lambda *a, **k: pytest.fail("a model was built while validating")

    def __exit__(self, *exc):
        cotsearch.CoTNet.__init__ = self.original


REFUSED = {"count": 0, "tests": 0}


def check_refused_or_valid(path, loader):
    """The document either loads (mutations can leave it valid) or is refused cleanly."""
    with NoBuild():
        try:
            loader(path)
        except SpecError as e:
            text = str(e)
            assert "\n" not in text and text.startswith(str(path)) and len(text) < 2000
            REFUSED["count"] += 1
            return True
    return False


fuzz = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))


@fuzz
@given(doc=mutated(VALID_SPEC))
def test_mutated_specs(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    check_refused_or_valid(path, load_spec)


@fuzz
@given(doc=mutated(VALID_SPACE))
def test_mutated_spaces(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    check_refused_or_valid(path, lambda p: load_space(str(p)))


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"!!python/object:os.system {}", b"a: !!python/name:os.system", b"x: !custom 1",
                     b"\xff\xfe\x00stages", b"[" * 5000, b"{a: " * 3000, b"&a [*a]", b"- - - - -",
                     b"a: &x 1\nb: *y", b"stages: " + b"x" * 100_000, b"\t- tab", b"? complex key\n: v"]),
))
def test_raw_bytes_and_yaml_tricks(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("raw") / "spec.yaml"
    path.write_bytes(raw)
    refused = check_refused_or_valid(path, load_spec)
    assert refused  # none of these is a spec
    assert check_refused_or_valid(path, lambda p: load_space(str(p)))


def test_at_least_2000_generated_bad_inputs_were_refused(request):
    ran = {item.name for item in request.session.items}
    if not {"test_mutated_specs", "test_mutated_spaces", "test_raw_bytes_and_yaml_tricks"} <= ran:
        pytest.skip("counts the fuzz tests above; run the whole module")
    assert REFUSED["count"] >= 2000, REFUSED


def test_enormous_document_is_refused_quickly(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("stages:\n" + "  - {depth: 1, planes: 16}\n" * 100_000)
    with pytest.raises(SpecError, match="larger than"):
        load_spec(path)


@pytest.mark.parametrize("content", ["stages: [{depth: 1, planes: 16, colour: red}]\n", "!!python/object/apply:os.system ['true']\n",
                                     "stages: [\n", "- 1\n"])
def test_cli_exit_code_2_one_line(tmp_path, content):
    path = tmp_path / "spec.yaml"
    path.write_text(content)
    for command in (["build", str(path)], ["tune", str(path)]):
        result = cli(*command, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
