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


MAX_FILE_BYTES = 1 << 20
"""Largest YAML file read (1 MiB): a settings file is a few KB; a list of 10,000 image paths is well under this."""

MAX_EXPANDED_NODES = 100_000
"""Most nodes a document may hold once every alias is expanded. Aliases share one Python object, so an alias
bomb (8 levels of 9 references: 43 M nodes from 1 KB) costs nothing to load, but anything that walks or prints the
value — an error message quoting it, ``str()`` of a codec variable — pays the expanded size: refused at the door.
A scalar counts as one node per :data:`CHARS_PER_NODE` characters it holds (at least one), so one long string
referenced through a few levels of aliases is bounded too (at most about 6 M characters in all)."""

CHARS_PER_NODE = 64


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes ``root`` stands for with aliases expanded (each shared node counted once per reference),
    computed on the composed graph without expanding it; stops counting past :data:`MAX_EXPANDED_NODES`."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if depth > 100:
            raise ConfigError("nested deeper than 100 levels")
        sizes[key] = MAX_EXPANDED_NODES + 1  # a cycle (a recursive alias) counts as too large
        total = 1
        if isinstance(node, yaml.ScalarNode):
            total += len(node.value) // CHARS_PER_NODE
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
                if total > MAX_EXPANDED_NODES:
                    break
        sizes[key] = total
        return total

    return size(root, 0)


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The non-empty mapping at the top of YAML file ``path``; ``what`` names the file in errors ("config file").

    Bounded before it is built: at most :data:`MAX_FILE_BYTES` of text and :data:`MAX_EXPANDED_NODES` nodes with
    aliases expanded (an alias bomb is refused in milliseconds, with a short message)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{p}: {what} is {p.stat().st_size} bytes, more than the {MAX_FILE_BYTES} a settings file may be"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: {what} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        loader = _StrictLoader(text)  # a SafeLoader subclass: no arbitrary objects
        try:
            node = loader.get_single_node()
            if node is None:
                raw = None
            else:
                try:
                    nodes = _expanded_size(node)
                except ConfigError as e:
                    raise ConfigError(f"{p}: {what} {e}") from None
                if nodes > MAX_EXPANDED_NODES:
                    raise ConfigError(
                        f"{p}: {what} expands to more than {MAX_EXPANDED_NODES} values once its aliases are expanded "
                        "(an alias bomb?); write the values out or use fewer nested aliases"
                    )
                raw = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ConfigError(_one_line(p, e)) from e
    except RecursionError:  # PyYAML's composer recurses per level, before the depth check can run
        raise ConfigError(f"{p}: {what} is nested too deeply to read (at most 100 levels)") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{p} must hold a mapping of settings, got {type(raw).__name__}")
    return raw
