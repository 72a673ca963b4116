"""Reading YAML files (``params.yaml``, study specs) strictly: a repeated key is an error.

Importing this module has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reloop.config.base import ConfigError

__all__ = ["load_yaml", "parse_yaml"]


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_unique_keys(loader: yaml.SafeLoader, root: yaml.Node, source: str) -> None:
    """Raise :class:`ConfigError` at the first mapping that repeats a key, naming the key, its
    section (dotted path) and both lines. YAML merge keys (``<<``) may be overridden."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:  # an alias of a node already checked
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += [(item, f"{where}[{i}]") for i, item in enumerate(node.value)]
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value
            if isinstance(key_node, yaml.ScalarNode):
                key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first_line.get(key)
            except TypeError:  # an unhashable key: PyYAML's own constructor reports it
                continue
            if earlier is not None:
                section = f"in section {where!r}" if where else "at the top level"
                raise ConfigError(f"{source}: duplicate key {key!r} {section} (lines {earlier} "
                                  f"and {line}); each key may appear once: remove one")
            first_line[key] = line
            stack.append((value_node, f"{where}.{key}" if where else str(key)))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML like :func:`yaml.safe_load`, but a key repeated in a mapping is a
    :class:`ConfigError` naming ``source``, the key, its section and both lines (PyYAML would
    silently keep the last value, dropping a whole duplicated section)."""
    loader = yaml.SafeLoader(text)
    loader.name = source  # error marks name the file, not "<unicode string>"
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_unique_keys(loader, root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML{_yaml_problem(err)}") from None
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where, what, and while doing what."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return ": " + " ".join(str(err).split())
    context = getattr(err, "context", None)
    return (f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
            + (f" ({context})" if context else ""))


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file (``params.yaml``, a study spec) with :func:`parse_yaml`; a missing or
    unreadable file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read: {err}") from None
    return parse_yaml(text, str(path))
