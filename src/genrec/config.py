"""Typed configs: TOML/dicts -> dataclasses, ``--set a.b=v`` overrides, loud failures.

Every config in genrec is a plain dataclass. ``from_dict`` builds one from a (nested) dict and
rejects unknown keys and values of the wrong type, naming the key and the allowed choices;
``to_dict`` / ``to_toml`` write the resolved config back out, so every run saves what it ran.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     lr: float = 1e-3
    ...     layers: int = 2
    >>> from_dict(Demo, apply_overrides({}, ["lr=0.01"]))
    Demo(lr=0.01, layers=2)
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ConfigError", "from_dict", "to_dict", "to_toml", "apply_overrides", "merge",
           "from_layers", "load_toml", "check_device"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown, missing or of the wrong type."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, key) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(known))}"
        )
    kwargs = {name: _coerce(data[name], hints[name], prefix + name) for name in data}
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{cls.__name__}: {e}") from None
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain nested dicts/lists (tuples become lists, as TOML has no tuples)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} to TOML")


def to_toml(data: dict[str, Any]) -> str:
    """Write nested dicts as TOML (scalars first, then one [table] per nested dict)."""
    lines: list[str] = []

    def emit(table: dict[str, Any], name: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        if name:
            lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, dict):
                emit(v, f"{name}.{k}" if name else k)

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _parse_scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def apply_overrides(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as TOML, bare words as strings)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a table")
        node[parts[-1]] = _parse_scalar(text.strip())
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` layered on ``base``, as a new dict (neither input changes): where both hold a
    table the two merge key by key, anywhere else ``over``'s value wins; None means unset and is
    dropped (a dataclass's None default never hides a preset's value or its own default).

    Example:
        >>> merge({"train": {"lr": 1e-3, "epochs": 30}, "seed": None}, {"train": {"lr": 3e-4}})
        {'train': {'lr': 0.0003, 'epochs': 30}}
    """
    out = {k: merge(v, {}) if isinstance(v, dict) else v for k, v in base.items() if v is not None}
    for k, v in over.items():
        if isinstance(v, dict):
            out[k] = merge(out[k] if isinstance(out.get(k), dict) else {}, v)
        elif v is not None:
            out[k] = v
    return out


def from_layers(cls: type[T], data: dict[str, Any], sets: list[str] = (),
                defaults: dict[str, Any] | None = None) -> T:
    """Dataclass ``cls`` from three layers: ``defaults`` (tables whose values differ from the
    nested dataclasses' own, e.g. a pipeline's training settings), then ``data`` (a preset) with
    the ``--set`` overrides ``sets`` applied; a table merges key by key (``merge``), so
    ``--set train.lr=3e-4`` keeps the rest of ``train`` as the layers below left it."""
    return from_dict(cls, merge(defaults or {}, apply_overrides(data, list(sets))))


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}; fix the file (see configs/ for "
                          f"examples)") from None


def check_device(device: str, key: str = "train.device") -> str:
    """``device`` when torch can use it here (cpu, cuda, cuda:N), else ConfigError with the fix."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{key}: {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {device!r} asked for, but this torch has no usable CUDA GPU; "
                          f"use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}: {device!r} does not exist; this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}: {device!r} asked for, but this machine has no Apple GPU; use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}: {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return device
