"""The incremental AMI parser: real traces in chunks of any size, and every malformation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cti.ami_message import AmiMessage
from cti.ami_protocol import AmiParser, ParseProblem, ProblemKind, encode_action
from tests.ami_trace import TRACES

TRACE_FILES = sorted(TRACES.glob("*.ami"))
SMALL_TRACES = [p for p in TRACE_FILES if p.stat().st_size < 100_000]
# Messages per trace, login response included (counted by splitting on blank lines).
EXPECTED_COUNTS = {
    "busy-hour-a.ami": 2121,
    "click-to-call.ami": 100,
    "inbound-abandoned.ami": 93,
    "inbound-answered.ami": 104,
    "queue-ops.ami": 148,
}
PERSIAN = "علی رضایی"

pytestmark = pytest.mark.skipif(not TRACE_FILES, reason=f"no traces in {TRACES}")


def reference(data: bytes) -> list[list[tuple[str, str]]]:
    """A deliberately naive whole-file parse to compare the incremental parser against."""
    body = data.split(b"\r\n", 1)[1]
    out = []
    for block in body.split(b"\r\n\r\n"):
        if block:
            lines = block.decode().split("\r\n")
            out.append([(k, v) for k, _, v in (line.partition(": ") for line in lines)])
    return out


def parse_in_chunks(data: bytes, cuts: list[int], **kw: object) -> tuple[AmiParser, list]:
    parser = AmiParser(**kw)  # type: ignore[arg-type]
    messages: list[AmiMessage] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        messages += parser.feed(data[prev:cut])
        prev = cut
    return parser, messages


def pairs(messages: list[AmiMessage]) -> list[list[tuple[str, str]]]:
    return [m.pairs for m in messages]


@pytest.fixture(scope="module")
def trace_bytes() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in TRACE_FILES}


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: p.name)
def test_each_trace_gives_the_expected_number_of_messages_and_the_banner(path: Path) -> None:
    parser = AmiParser()
    messages = parser.feed(path.read_bytes())
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert len(messages) == EXPECTED_COUNTS[path.name]
    assert messages[0].response == "Success" and messages[0].action_id == "login"
    assert pairs(messages) == reference(path.read_bytes())
    assert parser.drain_problems() == []


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, 4096])
@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: p.name)
def test_fixed_chunk_sizes_give_the_same_messages(
    path: Path, chunk: int, trace_bytes: dict[str, bytes]
) -> None:
    data = trace_bytes[path.name]
    if chunk < 7 and len(data) > 100_000:
        data = data[:60_000]  # keep the 1-byte feeding of the big trace quick
    whole = AmiParser().feed(data)
    _, messages = parse_in_chunks(data, list(range(chunk, len(data), chunk)))
    assert pairs(messages) == pairs(whole)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_chunk_boundaries_give_the_same_messages(
    data: st.DataObject, trace_bytes: dict[str, bytes]
) -> None:
    name = data.draw(st.sampled_from([p.name for p in SMALL_TRACES]))
    raw = trace_bytes[name]
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=300))
    parser, messages = parse_in_chunks(raw, cuts)
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert pairs(messages) == pairs(AmiParser().feed(raw))
    assert parser.problem_count == 0


def test_the_persian_caller_name_survives_every_split_inside_it(
    trace_bytes: dict[str, bytes],
) -> None:
    raw = trace_bytes["inbound-answered.ami"]
    encoded = PERSIAN.encode()
    start = raw.index(b"CallerIDName: " + encoded)
    end = start + len(b"CallerIDName: ") + len(encoded)
    expected = pairs(AmiParser().feed(raw))
    for cut in range(start, end + 2):
        parser, messages = parse_in_chunks(raw, [cut])
        assert pairs(messages) == expected
        assert parser.problem_count == 0
    names = {m.get("CallerIDName") for m in AmiParser().feed(raw)}
    assert PERSIAN in names


def test_bare_newline_line_ends_parse_the_same(trace_bytes: dict[str, bytes]) -> None:
    raw = trace_bytes["queue-ops.ami"]
    bare = raw.replace(b"\r\n", b"\n")
    parser, messages = parse_in_chunks(bare, list(range(0, len(bare), 5)))
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert pairs(messages) == pairs(AmiParser().feed(raw))


def test_mixed_line_ends_and_extra_blank_lines_between_messages() -> None:
    stream = b"Asterisk Call Manager/6.0.0\nEvent: A\r\nKey: 1\n\r\n\r\n\nEvent: B\nKey: 2\r\n\n"
    for step in (1, 2, 5, len(stream)):
        parser, messages = parse_in_chunks(stream, list(range(step, len(stream), step)))
        assert parser.banner == "Asterisk Call Manager/6.0.0"
        assert [m.pairs for m in messages] == [
            [("Event", "A"), ("Key", "1")],
            [("Event", "B"), ("Key", "2")],
        ]


def test_values_with_colons_empty_values_and_repeated_keys_are_kept() -> None:
    stream = (
        b"Event: VarSet\r\nAppData: Local/1001@agent-phones/n: x: y\r\nAccountCode: \r\n"
        b"AccountCode2:\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n"
    )
    (msg,) = AmiParser().feed(stream)
    assert msg["AppData"] == "Local/1001@agent-phones/n: x: y"
    assert msg["AccountCode"] == "" and msg["AccountCode2"] == ""
    assert msg.getall("ChanVariable") == ["A=1", "B=2"]
    assert msg.variables() == {"A": "1", "B": "2"}


def test_garbage_lines_are_reported_and_the_rest_of_the_message_kept() -> None:
    seen: list[ParseProblem] = []
    parser = AmiParser(on_problem=seen.append)
    messages = parser.feed(
        b"Event: Newchannel\r\nthis line has no colon\r\nChannel: PJSIP/1001-00000001\r\n\r\n"
        b"just garbage\r\n\r\nEvent: Next\r\n\r\n"
    )
    assert [m.pairs for m in messages] == [
        [("Event", "Newchannel"), ("Channel", "PJSIP/1001-00000001")],
        [("Event", "Next")],
    ]
    assert [p.kind for p in seen] == [
        ProblemKind.GARBAGE_LINE,
        ProblemKind.GARBAGE_LINE,
        ProblemKind.EMPTY_MESSAGE,
    ]
    assert seen[0].sample == "this line has no colon"
    assert parser.drain_problems() == []  # went to the callback instead


def test_invalid_utf8_is_replaced_and_reported_never_raised() -> None:
    parser = AmiParser()
    (msg,) = parser.feed(b"Event: X\r\nCallerIDName: \xff\xfe\xd8 ok\r\n\r\n")
    assert msg["CallerIDName"].startswith("\ufffd") and msg["CallerIDName"].endswith(" ok")
    assert [p.kind for p in parser.drain_problems()] == [ProblemKind.INVALID_UTF8]


@pytest.mark.parametrize("step", [1, 97, 1000, 10**7])
def test_an_oversize_message_is_dropped_and_the_following_one_kept(step: int) -> None:
    big = b"Event: Huge\r\n" + b"".join(b"Line%d: %s\r\n" % (i, b"x" * 50) for i in range(200))
    normal = b"Event: Normal\r\nUniqueid: 1.1\r\n\r\n"
    stream = b"Asterisk Call Manager/11.0.0\r\n" + big + b"\r\n" + normal + normal
    parser, messages = parse_in_chunks(
        stream, list(range(step, len(stream), step)), max_message_size=1024
    )
    assert [m.event for m in messages] == ["Normal", "Normal"]
    problems = parser.drain_problems()
    assert [p.kind for p in problems] == [ProblemKind.OVERSIZE]
    assert problems[0].sample.startswith("Event: Huge")


def test_an_oversize_line_without_newlines_does_not_grow_memory() -> None:
    parser = AmiParser(max_message_size=4096)
    parser.feed(b"Event: X\r\nData: ")
    for _ in range(100):
        assert parser.feed(b"y" * 10_000) == []
    assert len(parser._tail) <= 4096  # internal buffer: the point of the test
    assert [m.event for m in parser.feed(b"\r\n\r\nEvent: After\r\n\r\n")] == ["After"]


def test_old_style_command_output_with_blank_lines_ends_at_end_command() -> None:
    stream = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-1\r\n"
        b"Name: first line with a colon\n\nafter a blank line\n--END COMMAND--\r\n\r\n"
        b"Event: After\r\n\r\n"
    )
    for step in (1, 3, len(stream)):
        parser, messages = parse_in_chunks(stream, list(range(step, len(stream), step)))
        cmd, after = messages
        assert cmd.response == "Follows" and cmd.action_id == "cmd-1"
        assert cmd.getall("Output") == ["Name: first line with a colon", "", "after a blank line"]
        assert after.event == "After"
        assert parser.problem_count == 0


def test_end_command_glued_to_the_last_output_line() -> None:
    (msg,) = AmiParser().feed(
        b"Response: Follows\r\nPrivilege: Command\r\nlast line--END COMMAND--\r\n\r\n"
    )
    assert msg.getall("Output") == ["last line"]


def test_new_style_command_output_lines() -> None:
    (msg,) = AmiParser().feed(
        b"Response: Success\r\nActionID: c\r\nMessage: Command output follows\r\n"
        b"Output: Asterisk 22.10.1 built by x: y\r\nOutput: \r\n\r\n"
    )
    assert msg.getall("Output") == ["Asterisk 22.10.1 built by x: y", ""]


def test_unterminated_command_output_is_emitted_at_the_next_message() -> None:
    parser = AmiParser()
    messages = parser.feed(
        b"Response: Follows\r\nPrivilege: Command\r\nraw\n\r\nEvent: After\r\n\r\n"
    )
    assert [m.response or m.event for m in messages] == ["Follows", "After"]
    assert [p.kind for p in parser.drain_problems()] == [ProblemKind.UNTERMINATED_OUTPUT]


def test_finish_returns_a_last_message_without_its_blank_line() -> None:
    parser = AmiParser()
    assert parser.feed(b"Event: A\r\n\r\nEvent: B\r\nKey: v") == [AmiMessage.of(Event="A")]
    (last,) = parser.finish()
    assert last.pairs == [("Event", "B"), ("Key", "v")]
    assert [p.kind for p in parser.drain_problems()] == [ProblemKind.TRUNCATED]


def test_reset_expects_a_new_banner() -> None:
    parser = AmiParser()
    parser.feed(b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n")
    parser.reset()
    assert parser.banner is None
    assert [m.event for m in parser.feed(b"Asterisk Call Manager/9.0.0\r\nEvent: B\r\n\r\n")] == [
        "B"
    ]
    assert parser.banner == "Asterisk Call Manager/9.0.0"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_arbitrary_bytes_never_raise(blob: bytes, cuts: list[int]) -> None:
    parser, _ = parse_in_chunks(blob, [c for c in cuts if c <= len(blob)], max_message_size=256)
    parser.finish()


_key = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
_value = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.tuples(_key, _value), min_size=1, max_size=8), max_size=10),
    st.data(),
)
def test_generated_messages_round_trip_through_any_chunking(
    messages: list[list[tuple[str, str]]], data: st.DataObject
) -> None:
    messages = [[("Event", "Gen"), *m] for m in messages]
    stream = b"".join(AmiMessage(m).encode() for m in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=50))
    parser, parsed = parse_in_chunks(stream, cuts)
    assert pairs(parsed) == messages
    assert parser.problem_count == 0


def test_encode_action_from_mapping_and_pairs() -> None:
    assert encode_action("Ping", {"ActionID": "p-1"}) == b"Action: Ping\r\nActionID: p-1\r\n\r\n"
    wire = encode_action(
        "Originate",
        [
            ("ActionID", "o-1"),
            ("Channel", "PJSIP/1002"),
            ("CallerID", f'"{PERSIAN}" <09121234567>'),
            ("Variable", ["TALK=5", "TAMAS_CONTACT_ID=42"]),
            ("Async", True),
            ("Timeout", 20000),
            ("Account", None),
        ],
    )
    (msg,) = AmiParser().feed(wire)
    assert msg["Action"] == "Originate"
    assert msg["CallerID"] == f'"{PERSIAN}" <09121234567>'
    assert msg.getall("Variable") == ["TALK=5", "TAMAS_CONTACT_ID=42"]
    assert msg["Async"] == "true" and msg["Timeout"] == "20000" and "Account" not in msg


@pytest.mark.parametrize(
    "fields",
    [
        {"CallerID": "Evil\r\n\r\nAction: Hangup"},
        {"Bad\nKey": "x"},
        {"Key:": "x"},
        {"Action": "Ping"},
        {"Variable": ["A=1", "B=\n2"]},
    ],
)
def test_encode_action_refuses_injection(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode_action("Originate", fields)  # type: ignore[arg-type]
