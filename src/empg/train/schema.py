"""Typed-config machinery: build nested dataclasses from dicts with strict key and type checks,
dotted command-line overrides, and help text taken from each field's docstring.

A field's help is the string literal written right under it in the class body (the cleanrl /
tyro convention), so the docstring is the only place a setting is described.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import math
import re
import textwrap
import types
import typing
from functools import cache
from typing import Any

from empg.errors import ConfigError


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` read from the class source (empty if the source is unavailable)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for prev, node in itertools.pairwise(body):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {type(value).__name__}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string; users mean a number
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected float, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):  # NaN slips past every range check (NaN < 0 is False)
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise ConfigError(
                f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}"
        )
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown config key '{prefix}{key}'{hint} (valid: {', '.join(names)})"
            )
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(_in_section(str(e), prefix, names)) from e
    except TypeError as e:  # pragma: no cover - dataclass signature errors
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None


def _in_section(message: str, prefix: str, names: list[str]) -> str:
    """A section's own check message with the section's dotted path: one that starts with a
    field's bare name gets the full key (``final_norm must ...`` in ``algo.empg.`` becomes
    ``algo.empg.final_norm must ...``); one that names no key of the section is prefixed by it."""
    if not prefix or message.startswith(prefix):
        return message
    head = re.match(r"[A-Za-z_]\w*", message)
    if head and head.group() in names and not message[head.end() :].startswith("."):
        return prefix + message
    return f"{prefix[:-1]}: {message}"


def to_dict(obj: Any) -> Any:
    """Plain (YAML/JSON-ready) form of a config."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_scalar(text: str) -> Any:
    """A command-line value: YAML scalar rules (``3`` int, ``0.5`` float, ``true``, ``null``,
    ``[a, b]`` list); anything else stays a string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        path, raw = item.split("=", 1)
        keys = [k for k in path.strip().split(".") if k]
        if not keys:
            raise ConfigError(f"override {item!r} has an empty key")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = parse_scalar(raw)
    return data


def help_lines(cls: type, prefix: str = "") -> list[str]:
    """``key (type, default): doc`` for every field, nested sections flattened with dots."""
    lines = []
    docs = field_docs(cls)
    hints = _hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(tp):
            lines.extend(help_lines(tp, prefix + f.name + "."))
            continue
        shown = f"default {value!r}"
        if f.default is None and value is not None:  # filled in by __post_init__ (a preset)
            preset = getattr(defaults, "preset", None)
            source = f"{prefix}preset={preset}" if preset else "the other settings"
            shown = f"default null: {source} gives {value!r}"
        lines.append(f"  {prefix}{f.name} ({_type_name(tp)}, {shown}): {docs.get(f.name, '')}")
    return lines
