"""Frozen dataclasses to and from JSON-ready dicts, checked field by field against their type hints.

`to_dict(record)` and `from_dict(cls, data, where)` serve every file and report
splitnn writes (plan.json, --json reports). A field's JSON key is its name; a
field whose value is None and whose default is None is left out, so optional
sections appear only when present. `from_dict` checks each value against the
field's type (int, float, str, bool, None, tuples, lists, dicts, nested
records, unions of these) and raises RecordError naming the first bad field by
its path (`cut.tensors[2]`). A class may bring its own `to_dict`/`from_dict`
(the profiles do); those are used as they are.

Written here rather than taken from a library: the design card has no
serialisation package (pydantic, cattrs), and what is needed is this one
checked walk over dataclass fields.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class RecordError(ValueError):
    """A dict does not have the shape of the record it should hold; `path` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"field '{path}' {problem}")
        self.path = path
        self.problem = problem


def to_dict(record: Any) -> Any:
    """The JSON-ready form of a record (dataclasses become dicts, tuples become lists)."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        own = getattr(type(record), "to_dict", None)
        if own is not None and own is not _RecordMixin.to_dict:
            return own(record)
        out = {}
        for f in dataclasses.fields(record):
            value = getattr(record, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = to_dict(value)
        return out
    if isinstance(record, (list, tuple)):
        return [to_dict(v) for v in record]
    if isinstance(record, Mapping):
        return {str(k): to_dict(v) for k, v in record.items()}
    return record


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build `cls` from `data`, checking every field; RecordError names the first bad one."""
    return _read(cls, data, where)


class _RecordMixin:
    """Gives a record `to_dict()` and `from_dict(data)` methods."""

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Any:
        return _read_record(cls, data, where)


Record = _RecordMixin
# The function under the mixin's `from_dict` classmethod: a record whose `from_dict` is another one brings its own.
_MIXIN_FROM_DICT = _RecordMixin.__dict__["from_dict"].__func__


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read(kind: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _read_union(typing.get_args(kind), value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise RecordError(path, f"should be a list, not {_name(value)}")
        args = typing.get_args(kind)
        items = [_read(args[0] if args else Any, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or kind is dict:
        if not isinstance(value, Mapping):
            raise RecordError(path, f"should be an object, not {_name(value)}")
        args = typing.get_args(kind) or (str, Any)
        return {k: _read(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        own = getattr(kind, "from_dict", None)
        if own is not None and getattr(own, "__func__", None) is not _MIXIN_FROM_DICT:
            if not isinstance(value, Mapping):
                raise RecordError(path, f"should be an object, not {_name(value)}")
            try:
                return own(value)
            except (KeyError, TypeError, ValueError) as exc:
                raise RecordError(path, f"is malformed ({exc})") from None
        return _read_record(kind, value, path)
    return _read_scalar(kind, value, path)


def _read_union(options: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise RecordError(path, "is null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _read(option, value, path)
        except RecordError as exc:
            errors.append(exc)
    raise errors[0]


def _read_scalar(kind: Any, value: Any, path: str) -> Any:
    if kind is type(None):
        if value is not None:
            raise RecordError(path, f"should be null, not {_name(value)}")
        return None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise RecordError(path, "should be a whole number, not a boolean")
    if not isinstance(value, kind):
        raise RecordError(path, f"should be {_KIND_NAMES.get(kind, kind.__name__)}, not {_name(value)}")
    return value


def _read_record(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, Mapping):
        raise RecordError(path or cls.__name__, f"should be an object, not {_name(value)}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        sub = f"{path}.{f.name}" if path else f.name
        if f.name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(sub, "is missing")
            continue
        kwargs[f.name] = _read(hints[f.name], value[f.name], sub)
    return cls(**kwargs)


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)
