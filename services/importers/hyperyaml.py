"""Read the sizes out of a HyperPyYAML file (``cosyvoice2.yaml``) without executing it.

HyperPyYAML tags build objects (``!new:module.Class``), bind callables (``!name:module.fn``), call
functions (``!apply:``) and reference other keys (``!ref <key>``, also in arithmetic like
``!ref <chunk_size> * <token_mel_ratio>``). Loading it with hyperpyyaml would import CosyVoice and
build the models; we only need numbers, so tagged nodes become plain dicts (``__tag__`` holds the
tag) and references are resolved against the top-level keys.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path
from typing import Any

import yaml

from services.importers.errors import CheckpointError

_REF = re.compile(r"<([^<>]+)>")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class Ref(str):
    """The text of a ``!ref`` node, resolved after the whole document is read."""


class _Loader(yaml.SafeLoader):
    pass


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    tag = node.tag
    if isinstance(node, yaml.MappingNode):
        return {"__tag__": tag, **loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return {"__tag__": tag, "args": loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.ScalarNode)
    return {"__tag__": tag, "value": loader.construct_scalar(node)}


def _ref(loader: yaml.SafeLoader, node: yaml.Node) -> Ref:
    if not isinstance(node, yaml.ScalarNode):
        raise CheckpointError(f"!ref must tag a scalar like <key>, at line {node.start_mark.line + 1}")
    return Ref(str(loader.construct_scalar(node)))


_Loader.add_constructor("!ref", _ref)
_Loader.add_multi_constructor("!", _tagged)


def _evaluate(expression: str) -> Any:
    """A resolved ``!ref`` expression: a number, or +-*/ of numbers; anything else is kept as text."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(expression)

    try:
        return walk(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError):
        return expression


def _resolve(value: Any, top: dict[str, Any], path: str, depth: int = 0) -> Any:
    if depth > 20:
        raise CheckpointError(f"!ref cycle at {path}")
    if isinstance(value, Ref):
        names = _REF.findall(value)
        if names == [value.strip()[1:-1]] and value.strip().startswith("<"):
            return _resolve(_lookup(top, names[0], path), top, path, depth + 1)
        text = _REF.sub(lambda m: repr(_resolve(_lookup(top, m.group(1), path), top, path, depth + 1)), value)
        return _evaluate(text)
    if isinstance(value, dict):
        return {k: _resolve(v, top, f"{path}.{k}", depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top, f"{path}[{i}]", depth) for i, v in enumerate(value)]
    return value


def _lookup(top: dict[str, Any], dotted: str, path: str) -> Any:
    node: Any = top
    for part in dotted.split("["):
        part = part.rstrip("]")
        key: Any = int(part) if part.isdigit() else part
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise CheckpointError(f"!ref <{dotted}> at {path} names no key") from None
    return node


def load_hyperpyyaml(path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document as plain dicts/lists/numbers with ``!ref`` resolved; tags kept under ``__tag__``."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass: no code runs
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} is not a YAML mapping")
    raw.update(overrides or {})
    return dict(_resolve(raw, raw, path.name))


def section(doc: dict[str, Any], key: str, *, tag_suffix: str, source: str) -> dict[str, Any]:
    """``doc[key]``, checked to be built by the class CosyVoice uses (``!new:...<tag_suffix>``)."""
    node = doc.get(key)
    if not isinstance(node, dict):
        raise CheckpointError(f"{source}: section {key!r} is missing")
    tag = str(node.get("__tag__", ""))
    if not tag.endswith(tag_suffix):
        raise CheckpointError(f"{source}: {key} is {tag or 'untagged'}, expected a {tag_suffix} (CosyVoice 2 layout)")
    return node
