"""Typed configurations to and from plain data (JSON, checkpoints).

Every configuration of the study is a frozen dataclass; checkpoints and caches store
``dataclasses.asdict(cfg)``. :func:`from_dict` rebuilds the dataclass from such a dict using the
field types (tuples, nested dataclasses), so no caller has to repair what JSON or a checkpoint
turned into lists.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _convert(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if arg is not type(None) and value is not None:
                return _convert(arg, value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """The dataclass ``cls`` from ``asdict``-style ``data``; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls(**{k: _convert(hints[k], v) for k, v in data.items()})


def to_json(cfg: Any) -> str:
    """A canonical JSON text of a configuration (sorted keys): equal configs, equal texts."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=list)
