"""YAML documents read safely, and Pydantic errors as the one-line messages users see."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cotsearch.errors import SpecError

MAX_SPEC_BYTES = 1 << 20  # a spec is a few KB; anything this large is not one
MAX_VALUES = 100_000  # the largest space file shipped holds a few hundred


def _field_names(model: type[BaseModel], seen: set | None = None) -> set[str]:
    """Every field name of a schema and its nested schemas, for 'did you mean'."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    names = {field.alias or name for name, field in model.model_fields.items()}
    for field in model.model_fields.values():
        for arg in _type_args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names |= _field_names(arg, seen)
    return names


def _type_args(annotation) -> list:
    args = list(getattr(annotation, "__args__", ()) or ())
    out = [annotation]
    for arg in args:
        out += _type_args(arg)
    return out


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    """Pydantic's errors as one line: 'source: field.path: what was expected; ...'."""
    vocabulary = sorted(_field_names(model))
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(_printable(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])[:100]
            guess = difflib.get_close_matches(key, vocabulary, n=1)
            msg = f"unknown key{'; did you mean ' + repr(guess[0]) + '?' if guess else ''}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error") and not isinstance(e["input"], dict | list):
            msg = f"{msg} (got {e['input']!r:.60})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return one_line(f"{source}: " + "; ".join(parts[:3]) + more)


def _printable(part) -> str:
    text = str(part)
    return text if text.isprintable() and text.strip() == text and len(text) <= 100 else repr(text[:100])


def one_line(text: str) -> str:
    """Messages are one line, whatever a user's keys and values hold."""
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with the safe loader, turning every failure into a SpecError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{path}: file is larger than {MAX_SPEC_BYTES} bytes; a spec is a small YAML document")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start}); expected a YAML file") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    return parse_yaml(text, str(path))


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without one of its quiet habits: a key given twice in a mapping
    is an error here, where PyYAML keeps the last value."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)  # merge keys (<<) first, as the base class does
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base class refuses it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def expanded_size(node: yaml.Node, sizes: dict[int, int] | None = None) -> int:
    """Values the document holds once every alias is expanded: a few hundred bytes of
    nested aliases can stand for millions of values (the "billion laughs")."""
    sizes = {} if sizes is None else sizes
    if id(node) not in sizes:
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes[id(node)] = 1 + sum(expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document, safely: no code, no duplicate keys, at most MAX_VALUES values."""
    loader = None
    try:
        loader = StrictLoader(text)  # reads the first characters already: a bad one raises here
        node = loader.get_single_node()
        if node is not None and (size := expanded_size(node)) > MAX_VALUES:
            raise SpecError(f"{source}: the document expands to {size:,} values (aliases included); "
                            f"at most {MAX_VALUES:,} are read")
        return loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{source}: invalid YAML{where}: {e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise SpecError(f"{source}: invalid YAML: {type(e).__name__}") from None
    finally:
        if loader is not None:
            loader.dispose()
