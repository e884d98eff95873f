"""Loading specs: the shipped presets by name, YAML files by path. Names and paths are
resolved here, at the edges (command line, timm registry, search spaces); the builder and
the cost model take a BackboneSpec."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cotsearch.arch.spec import BackboneSpec
from cotsearch.arch.yaml_io import format_validation_error, parse_yaml, read_yaml
from cotsearch.errors import CotsearchError, SpecError

PRESETS = resources.files("cotsearch.arch") / "presets"


def spec_from_data(data: Any, source: str) -> BackboneSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of spec fields (stem, stages, ...), got {type(data).__name__}")
    try:
        return BackboneSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source, BackboneSpec)) from None
    except RecursionError:
        raise SpecError(f"{source}: document is nested too deeply") from None


def list_presets() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in PRESETS.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str | Path) -> BackboneSpec:
    """A preset by name (`cotnet50`) or a spec from a YAML file."""
    text = str(name_or_path)
    if text in list_presets():
        preset = PRESETS / f"{text}.yaml"
        return spec_from_data(parse_yaml(preset.read_text(), f"preset {text}"), f"preset {text}")
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return spec_from_data(read_yaml(path), str(path))
    guess = difflib.get_close_matches(text, list_presets(), n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    raise SpecError(f"{text}: no such preset or file; {hint}presets: {', '.join(list_presets())}")


def is_written_spec(path: str | Path) -> bool:
    """Whether `path` holds exactly what cotsearch writes for a spec (`BackboneSpec.to_yaml`):
    such a file a command may overwrite; a spec a person wrote by hand never matches it. (Nor
    does one an older cotsearch wrote before the spec gained a field: refused, the safe way.)"""
    try:
        spec = load_spec(path)  # first: it refuses a file too big to be a spec before reading it
        return Path(path).read_bytes() == spec.to_yaml().encode()
    except (CotsearchError, OSError):
        return False
