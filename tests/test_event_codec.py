"""Every bus event survives the trip to JSON and back, as another instance receives it."""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti import domain_events as de
from cti import event_codec
from cti.envelope import PbxEvent
from cti.service import LinkStateChanged

DOMAIN_EVENTS = [getattr(de, name) for name in de.__all__ if name != "DomainEvent"]

text = st.text(max_size=12)  # Persian and every other script included
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a field's type hint, restricted to what JSON can carry."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return st.one_of(*[strategy_for(a) for a in get_args(hint)])
    if origin is tuple:
        args = get_args(hint)
        return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
    if origin is Mapping or origin is dict:
        _key, value = get_args(hint)
        return st.dictionaries(text, strategy_for(value), max_size=3)
    return {
        str: text,
        int: st.integers(-(2**53), 2**53),
        float: finite,
        bool: st.booleans(),
        type(None): st.none(),
        Any: json_value,
    }[hint]


def events_of(cls: type) -> st.SearchStrategy[Any]:
    hints = get_type_hints(cls)
    kwargs = {
        f.name: strategy_for(hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init and f.name not in ("type", "origin")
    }
    return st.builds(cls, **kwargs)


def wire_trip(event: Any, origin: str | None = None) -> Any:
    """What another instance rebuilds from the JSON this event becomes."""
    return event_codec.decode_json(event_codec.encode_json(event), origin=origin)


@pytest.mark.parametrize("cls", DOMAIN_EVENTS, ids=lambda c: c.type)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_domain_event_comes_back_equal_from_its_json(cls, data):
    event = data.draw(events_of(cls))
    pbx = data.draw(text)
    back = wire_trip(PbxEvent(pbx, event))
    assert isinstance(back, PbxEvent)
    assert type(back.event) is cls
    assert back == PbxEvent(pbx, event)
    assert back.event.to_dict() == json.loads(json.dumps(event.to_dict()))


@settings(max_examples=40, deadline=None)
@given(event=events_of(LinkStateChanged))
def test_link_state_changes_come_back_equal_from_their_json(event):
    back = wire_trip(event)
    assert type(back) is LinkStateChanged and back == event


def test_every_domain_event_type_is_registered_once():
    registry = event_codec.registry()
    for cls in DOMAIN_EVENTS:
        assert registry[cls.type] is cls
    assert registry["pbx.link"] is LinkStateChanged
    assert len(set(registry.values())) == len(registry)


def test_tuples_come_back_as_tuples_and_integral_floats_as_floats():
    ended = de.CallEnded(
        at=1700000000,  # an int where a float is declared
        call_id="1795416804.7",
        agents_rung=("user:1", "user:2"),
        transfers=({"kind": "blind", "target": "1002@tamas-transfer"},),
        variables={"TAMAS_CONTACT_ID": "12"},
        caller_name="علی رضایی",
    )
    back = wire_trip(PbxEvent("lab", ended)).event
    assert back.agents_rung == ("user:1", "user:2")
    assert back.transfers == ({"kind": "blind", "target": "1002@tamas-transfer"},)
    assert isinstance(back.at, float) and back.at == 1700000000.0
    assert back.caller_name == "علی رضایی"


def test_the_origin_marks_a_republished_event_without_changing_its_equality():
    ringing = de.CallRinging(at=1.5, call_id="c1", agent="user:7")
    local = PbxEvent("lab", ringing)
    remote = wire_trip(local, origin="gw-a")
    assert local.origin is None and remote.origin == "gw-a"
    assert remote == local
    link = wire_trip(LinkStateChanged("lab", "up", 2.0), origin="gw-a")
    assert link.origin == "gw-a"


def test_fields_a_newer_instance_adds_are_ignored():
    data = {"type": "call.held", "pbx": "lab", "at": 3.0, "call_id": "c9", "new_field": [1]}
    back = event_codec.decode(data)
    assert back == PbxEvent("lab", de.CallHeld(at=3.0, call_id="c9"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"type": "call.teleported", "pbx": "lab", "at": 1}', "unknown event type"),
        ('{"pbx": "lab", "at": 1}', "unknown event type None"),
        ('{"type": "call.held", "pbx": "lab", "at": 1}', "call_id"),  # required field missing
        ('{"type": "call.held", "at": 1, "call_id": "x"}', "no pbx"),
        (
            '{"type": "call.ended", "pbx": "lab", "at": 1, "call_id": "x", "agents_rung": 5}',
            "expected a list",
        ),
        ("[1, 2]", "not a JSON object"),
        ("{nope", "not JSON"),
    ],
)
def test_bad_payloads_are_a_clear_codec_error(payload, message):
    with pytest.raises(event_codec.CodecError, match=message):
        event_codec.decode_json(payload)


def test_register_refuses_a_second_class_for_a_known_type_and_adds_new_ones():
    @dataclasses.dataclass(frozen=True)
    class Teleported:
        at: float
        where: tuple[str, ...] = ()
        type: str = "test.teleported"

        def to_dict(self) -> dict[str, Any]:
            return {"type": self.type, "at": self.at, "where": list(self.where)}

    event_codec.register(Teleported)
    try:
        assert wire_trip(Teleported(1.0, ("a", "b"))) == Teleported(1.0, ("a", "b"))
        event_codec.register(Teleported)  # again: harmless

        @dataclasses.dataclass(frozen=True)
        class Impostor:
            at: float
            type: str = "call.ringing"

        with pytest.raises(ValueError, match="already CallRinging"):
            event_codec.register(Impostor)
    finally:
        event_codec._REGISTRY.pop("test.teleported", None)
