"""The wire form of bus events: ``to_dict()`` out, :func:`decode` back in.

Gateway instances share their events over Redis (``tamas/cluster/redis_bus.py``), so every
event that crosses a process boundary needs a way back from its JSON form. The registry here
is the one place that knows which ``type`` string is which class: every
:class:`cti.domain_events.DomainEvent` subclass (wrapped in a :class:`~cti.envelope.PbxEvent`
on the bus, hence the ``pbx`` key in its dict) and the link state changes of
``cti/service.py``. Other packages add their own events with :func:`register`.

Decoding is by the dataclass's type hints: JSON lists become tuples where the field is a
tuple, objects become dicts, ints become floats where a float is expected. Keys the class
does not know are ignored (a newer instance may send more); a missing required field or an
unknown type is a :class:`CodecError`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

from cti import domain_events as de
from cti.envelope import PbxEvent

__all__ = ["CodecError", "decode", "decode_json", "encode", "encode_json", "register", "registry"]


class CodecError(ValueError):
    """The data is not an event this codec knows how to rebuild."""


Converter = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type
    in_envelope: bool  # domain events travel as PbxEvent(pbx, event)
    fields: tuple[tuple[str, Converter | None], ...]
    """Each init field with the function that shapes its JSON value (None: as it is)."""
    has_origin: bool


_REGISTRY: dict[str, _Entry] = {}


def register(cls: type, *, in_envelope: bool | None = None) -> type:
    """Make ``cls`` (a dataclass with a ``type`` and ``to_dict()``) decodable.

    ``in_envelope`` defaults to True for :class:`DomainEvent` subclasses. Usable as a
    class decorator; registering the same class twice is harmless.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    type_name = getattr(cls, "type", None)
    if not isinstance(type_name, str):
        # A dataclass field with a default (cti.service.LinkStateChanged) reads as a member.
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        type_name = defaults.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise TypeError(f"{cls.__name__} has no event type")
    known = _REGISTRY.get(type_name)
    if known is not None and known.cls is not cls:
        raise ValueError(f"event type {type_name!r} is already {known.cls.__name__}")
    envelope = issubclass(cls, de.DomainEvent) if in_envelope is None else in_envelope
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    fields = tuple((name, _compile(hints.get(name, Any))) for name in names if name != "origin")
    _REGISTRY[type_name] = _Entry(cls, envelope, fields, "origin" in names)
    return cls


def registry() -> dict[str, type]:
    """type string -> class, for every registered event."""
    return {name: entry.cls for name, entry in _REGISTRY.items()}


def encode(event: Any) -> dict[str, Any]:
    """The event's JSON-ready dict (``to_dict()``; a PbxEvent adds ``pbx``)."""
    out: dict[str, Any] = event.to_dict()
    return out


def encode_json(event: Any) -> str:
    return json.dumps(encode(event), ensure_ascii=False, separators=(",", ":"))


def decode(data: Mapping[str, Any], *, origin: str | None = None) -> Any:
    """The event ``data`` came from; domain events come back inside a PbxEvent.

    ``origin`` (the producing instance) is set on the result where the class has it.
    """
    type_name = data.get("type")
    entry = _REGISTRY.get(type_name) if isinstance(type_name, str) else None
    if entry is None:
        raise CodecError(f"unknown event type {type_name!r}")
    values: dict[str, Any] = {}
    try:
        for name, convert in entry.fields:
            if name in data:  # else a default applies, or the constructor says it is missing
                value = data[name]
                values[name] = value if convert is None or value is None else convert(value)
        if entry.has_origin and origin is not None and not entry.in_envelope:
            values["origin"] = origin
        event = entry.cls(**values)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{type_name}: {exc}") from None
    if not entry.in_envelope:
        return event
    pbx = data.get("pbx")
    if not isinstance(pbx, str):
        raise CodecError(f"{type_name}: no pbx")
    return PbxEvent(pbx, event, origin=origin)


def decode_json(text: str | bytes, *, origin: str | None = None) -> Any:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CodecError("not a JSON object")
    return decode(data, origin=origin)


def _compile(hint: Any) -> Converter | None:
    """The function that shapes a JSON value as the type hint says (tuples, floats, dicts),
    worked out once per field; None when the JSON value is already right."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        options = [a for a in get_args(hint) if a is not type(None)]
        return _compile(options[0]) if len(options) == 1 else None
    if origin is tuple:
        args = get_args(hint)
        item = _compile(args[0]) if len(args) == 2 and args[1] is Ellipsis else None

        def to_tuple(value: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise CodecError(f"expected a list, got {type(value).__name__}")
            if item is None:
                return tuple(value)
            return tuple(v if v is None else item(v) for v in value)

        return to_tuple
    if origin in (Mapping, dict, typing.Mapping):

        def to_dict(value: Any) -> Any:
            if not isinstance(value, Mapping):
                raise CodecError(f"expected an object, got {type(value).__name__}")
            return dict(value)

        return to_dict
    if hint is float:

        def to_float(value: Any) -> Any:
            if isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            return value

        return to_float
    return None


def _register_builtin() -> None:
    for name in de.__all__:
        cls = getattr(de, name)
        if cls is not de.DomainEvent:
            register(cls)
    from cti.service import LinkStateChanged

    register(LinkStateChanged, in_envelope=False)


_register_builtin()
