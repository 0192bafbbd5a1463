"""Typed dataclass configs from YAML with `key.sub=value` command-line overrides.

Every default lives in its dataclass, once. A config file only sets what it changes: the
recipes shipped in `llmrec/configs/` (found by name, `--config task3`, from any folder; the
repository's top-level `configs/` is the same folder) hold only where a recipe departs from
the defaults. The resolved config (defaults + file + overrides) is what gets saved next to
each output.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmrec import io
from llmrec.errors import ConfigError

T = TypeVar("T")
SHIPPED = Path(__file__).parent / "configs"
__all__ = ["ConfigError", "SHIPPED", "find_config", "load_config", "save_config", "shipped_configs", "to_dict"]


def shipped_configs() -> list[str]:
    """Names of the recipes that ship with llmrec (`llmrec/configs/<name>.yaml`)."""
    return sorted(path.stem for path in SHIPPED.glob("*.yaml"))


def find_config(name_or_path: str | Path) -> Path:
    """A config file: an existing path, or the name of a shipped one (`task3`, `accelerate/ddp`)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = SHIPPED / f"{name_or_path}.yaml"
    if path.suffix not in (".yaml", ".yml") and not path.is_absolute() and shipped.exists():
        return shipped
    raise ConfigError(f"{name_or_path}: config file not found (shipped configs: {', '.join(shipped_configs())})")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(kind, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)[:1] or (Any,)
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(kind)))}")
        return value
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _build(cls: type[T], values: dict, where: str = "") -> T:
    fields = _field_types(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key '{unknown[0]}' (known: {', '.join(fields)})")
    kwargs = {k: _coerce(v, fields[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict:
    """Plain YAML-ready dict of a config (paths as strings)."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: '{key}' is not a section")
    node[leaf] = value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults of `cls`, updated by the YAML file at `path` (or the shipped recipe of that
    name), then by `key.sub=value` overrides (values parsed as YAML: `k=3` is an int, `k=[1,2]`
    a list)."""
    tree = to_dict(cls())
    if path is not None:
        path = find_config(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        _merge(tree, loaded)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}' is not key=value")
        key, raw = override.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _set(tree, key.strip(), value)
    return _build(cls, tree)


def _merge(base: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def save_config(config: Any, path: str | Path) -> Path:
    return io.write_yaml(to_dict(config), path)
