"""The one keyset cursor codec: every paginated list (the traces page and API, trace search,
the spans and evaluations APIs) hands out and reads back its cursors here.

A cursor is opaque to clients: url-safe base64, without padding, of the compact JSON
``{"v": <version>, "k": <list kind>, "a": [<key values>]}``. A datetime key value is
carried as microseconds since the epoch. Decoding checks the version, the kind (a cursor of
one list is not read by another) and every key value's type against the caller's shape;
anything else raises the one ``InvalidCursor``, which the views answer with 400.

Cursors carry no secret and need none: the key values only say where a page starts, and
every list is still scoped to the caller's projects. This module imports nothing of ours,
so every app may use it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

VERSION = 1
MESSAGE = "invalid cursor: pass back the one from the previous page"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_LENGTH = 512

# What a key value may be, and what a shape may ask for: an int, a str, a datetime, or a
# str that must match a pattern in full (a hex id, a direction letter).
KeyValue: TypeAlias = int | str | datetime
KeyType: TypeAlias = type[int] | type[str] | type[datetime] | re.Pattern[str]


class InvalidCursor(ValueError):
    """Not a cursor of this list and version: the client must start again from page one."""

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


def _plain(value: KeyValue) -> int | str:
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(microseconds=1)
    return value


def encode_cursor(kind: str, key: Sequence[KeyValue]) -> str:
    """The cursor of ``kind``'s list that resumes after the row whose key is ``key``."""
    body = {"v": VERSION, "k": kind, "a": [_plain(v) for v in key]}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _typed(value: object, want: KeyType) -> KeyValue:
    if want is datetime:
        if type(value) is not int:
            raise InvalidCursor
        try:
            return _EPOCH + timedelta(microseconds=value)
        except OverflowError as exc:
            raise InvalidCursor from exc
    if isinstance(want, re.Pattern):
        if not isinstance(value, str) or want.fullmatch(value) is None:
            raise InvalidCursor
        return value
    # bool is an int to Python; a cursor's int is never true or false.
    if type(value) is not want:
        raise InvalidCursor
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise InvalidCursor
    return value  # type: ignore[return-value]


def decode_cursor(cursor: str, kind: str, shape: Sequence[KeyType]) -> list[KeyValue]:
    """The key values of a cursor made by ``encode_cursor(kind, ...)``, each checked and
    converted by the type at its place in ``shape``; InvalidCursor otherwise."""
    if not cursor or len(cursor) > _MAX_LENGTH:
        raise InvalidCursor
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor from exc
    if not isinstance(body, dict) or set(body) != {"v", "k", "a"}:
        raise InvalidCursor
    if type(body["v"]) is not int or body["v"] != VERSION or body["k"] != kind:
        raise InvalidCursor
    values = body["a"]
    if not isinstance(values, list) or len(values) != len(shape):
        raise InvalidCursor
    return [_typed(value, want) for value, want in zip(values, shape, strict=True)]
