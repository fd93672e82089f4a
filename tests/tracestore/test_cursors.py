"""The one keyset cursor codec (tracestore/cursors.py) every paginated list uses."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest

from tracestore.cursors import VERSION, InvalidCursor, decode_cursor, encode_cursor

_HEX32 = re.compile(r"[0-9a-f]{32}")
_SHAPE = (datetime, _HEX32, int)
_KEY = (datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC), "ab" * 16, 42)


def _raw(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def test_a_cursor_reads_back_the_key_it_was_made_from() -> None:
    cursor = encode_cursor("traces", _KEY)
    assert decode_cursor(cursor, "traces", _SHAPE) == list(_KEY)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)  # safe in a URL as is


def test_the_cursor_is_versioned_json_of_the_key_with_times_in_microseconds() -> None:
    cursor = encode_cursor("traces", _KEY)
    body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert body == {"v": VERSION, "k": "traces", "a": [1772368205123456, "ab" * 16, 42]}


def test_times_before_the_epoch_and_large_ids_round_trip() -> None:
    key = (datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**62)
    assert decode_cursor(encode_cursor("evaluations", key), "evaluations", (datetime, int)) == [
        key[0],
        2**62,
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "nope",
        "not a cursor!",
        "%%%%",
        "1772368205123456.abababababababababababababababab.42",  # the earlier dotted form
        encode_cursor("traces", _KEY)[:-3],  # cut short
        encode_cursor("traces", _KEY)[3:],  # front cut off
        "A" * 600,  # too long to be one of ours
        _raw([1, "traces", []]),
        _raw({"v": 1, "k": "traces", "a": [1, "ab" * 16]}),  # a value missing
        _raw({"v": 1, "k": "traces", "a": [1, "ab" * 16, 42, 7]}),  # one too many
        _raw({"v": 1, "k": "traces", "a": ["1", "ab" * 16, 42]}),  # time as text
        _raw({"v": 1, "k": "traces", "a": [1.5, "ab" * 16, 42]}),  # time as a float
        _raw({"v": 1, "k": "traces", "a": [1, "AB" * 16, 42]}),  # id not lowercase hex
        _raw({"v": 1, "k": "traces", "a": [1, "ab" * 15, 42]}),  # id too short
        _raw({"v": 1, "k": "traces", "a": [1, "ab" * 16, True]}),  # a bool is no id
        _raw({"v": 1, "k": "traces", "a": [1, "ab" * 16, 2**64]}),  # id out of range
        _raw({"v": 1, "k": "traces", "a": [10**20, "ab" * 16, 42]}),  # time out of range
        _raw({"v": 1, "k": "traces", "a": [1, "ab" * 16, 42], "x": 0}),  # an extra field
    ],
)
def test_a_garbled_or_tampered_cursor_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match=r"^invalid cursor: pass back the one from the"):
        decode_cursor(cursor, "traces", _SHAPE)


def test_a_cursor_of_another_version_is_invalid() -> None:
    body = json.loads(base64.urlsafe_b64decode(encode_cursor("traces", _KEY) + "=="))
    assert decode_cursor(_raw(body), "traces", _SHAPE) == list(_KEY)
    for version in (VERSION + 1, VERSION - 1, str(VERSION), True):
        with pytest.raises(InvalidCursor):
            decode_cursor(_raw({**body, "v": version}), "traces", _SHAPE)


def test_a_cursor_of_one_list_is_not_read_by_another() -> None:
    cursor = encode_cursor("evaluations", (_KEY[0], 42))
    assert decode_cursor(cursor, "evaluations", (datetime, int)) == [_KEY[0], 42]
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "trace-search", (datetime, int))
