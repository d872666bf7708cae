"""Reading YAML files given by users, with one-line errors that name the file, the line and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fcm.errors import ConfigError


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key repeated in one mapping (PyYAML would silently keep the last value)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):  # as PyYAML's base class does, naming the node found instead
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {type(node).__name__}", node.start_mark
            )
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen is not None:
                raise _DuplicateKeyError(
                    None, None, f"duplicate key {key!r} (first on line {seen.line + 1})", key_node.start_mark
                )
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _one_line(path: Path, e: yaml.YAMLError) -> str:
    """``file:line:column: not valid YAML: problem`` for a YAML error (PyYAML's own message spans several lines)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if not isinstance(e, _DuplicateKeyError):
        problem = f"not valid YAML: {problem}"
    context = getattr(e, "context", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The non-empty mapping at the top of YAML file ``path``; ``what`` names the file in errors ("config file")."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    try:
        raw = yaml.load(p.read_text(), Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        raise ConfigError(_one_line(p, e)) from e
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{p} must hold a mapping of settings, got {type(raw).__name__}")
    return raw
