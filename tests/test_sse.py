"""Frame encoding, checked against the SSE spec's parsing rules."""

import json

import pytest

from sse_monitor.bus.event import Event
from sse_monitor.bus.sse import encode_event, encode_frame
from sse_monitor.clock import iso, utc_now


def parse_frame(raw: bytes) -> dict[str, str]:
    """A minimal SSE parser, as the WHATWG spec describes it, for one frame."""
    fields: dict[str, str] = {}
    data: list[str] = []
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), "a frame ends with a blank line"
    for line in text[:-2].replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith(":"):
            fields.setdefault("comment", line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    if data:
        fields["data"] = "\n".join(data)
    return fields


def test_multi_line_data_becomes_several_data_lines() -> None:
    raw = encode_frame(data="one\ntwo\r\nthree\rfour", event="note")
    assert raw == b"event: note\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
    assert parse_frame(raw)["data"] == "one\ntwo\nthree\nfour"


def test_unicode_line_separators_are_not_line_breaks() -> None:
    raw = encode_frame(data="a\u2028b\x0bc")
    assert raw.count(b"data:") == 1
    assert parse_frame(raw)["data"] == "a\u2028b\x0bc"


def test_id_event_and_retry_fields() -> None:
    raw = encode_frame(data="x", event="metrics", id="abcd1234-7", retry=3000)
    assert parse_frame(raw) == {
        "retry": "3000",
        "id": "abcd1234-7",
        "event": "metrics",
        "data": "x",
    }
    assert raw.index(b"retry:") < raw.index(b"id:") < raw.index(b"event:") < raw.index(b"data:")


def test_comment_only_frame() -> None:
    assert encode_frame(comment="ping") == b": ping\n\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": "x", "id": "a\nb"}, "single line"),
        ({"data": "x", "event": "a\rb"}, "single line"),
        ({"data": "x", "id": "a\0b"}, "NUL"),
        ({"data": "x", "retry": -1}, "non-negative"),
        ({}, "at least one field"),
    ],
)
def test_invalid_fields_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_frame(**kwargs)


def test_event_json_is_one_line_and_round_trips() -> None:
    data = {"text": "line one\nline two", "n": 3, "nested": {"ok": True}}
    raw = encode_event(Event("metrics", data), "b00t0000-1")
    assert raw.count(b"\n") == 4  # id, event, data, blank line
    assert json.loads(parse_frame(raw)["data"]) == data


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_event(Event("metrics", {"cpu": float("nan")}), "b00t0000-1")


def test_timestamps_are_utc_with_an_offset() -> None:
    stamp = iso(utc_now())
    assert stamp.endswith("+00:00")
    assert "T" in stamp
