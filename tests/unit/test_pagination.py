from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError, ErrorCode
from persistence.pagination import (
    MAX_POSITION,
    CursorCodec,
    cursor_instant,
    cursor_key,
    cursor_position,
    page_size,
)

LICENSES = CursorCodec("licenses/issued_at/desc", [cursor_instant, cursor_key])
DAY_LINES = CursorCodec("day_lines", [cursor_position])


def hand_made(values: Any) -> str:
    """A cursor as an attacker would forge one: base64url of any JSON."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def assert_refused(codec: CursorCodec, cursor: str) -> None:
    with pytest.raises(DomainError) as refused:
        codec.decode(cursor)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, codec.field)


def test_cursor_round_trips_instants_and_ids() -> None:
    at = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    assert LICENSES.decode(LICENSES.encode([at, "lic_1"])) == [at, "lic_1"]


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "bm90IGpzb24",
        hand_made(["feed", -1]),  # another list's cursor, of the right arity
        hand_made(["licenses/issued_at/desc", "2026-07-01T09:30:00+00:00"]),  # one value short
        hand_made(["licenses/issued_at/desc", 42, "lic_1"]),  # a number where an instant goes
        hand_made(["licenses/issued_at/desc", "2026-07-01T09:30:00", "lic_1"]),  # no offset
        hand_made(["licenses/issued_at/desc", "2026-07-01T09:30:00+00:00", "lic\u00001"]),  # NUL
        hand_made(["licenses/issued_at/asc", "2026-07-01T09:30:00+00:00", "lic_1"]),  # other order
        hand_made({"licenses": 1}),
        hand_made(None),
        "W" * 10_000,
    ],
)
def test_forged_license_cursors_are_refused_on_the_after_field(cursor: str) -> None:
    assert_refused(LICENSES, cursor)


@pytest.mark.parametrize("position", [-1, MAX_POSITION + 1, 2**64, 1.5, True, "3", None])
def test_day_line_positions_outside_sql_integer_are_refused(position: Any) -> None:
    assert_refused(DAY_LINES, hand_made(["day_lines", position]))


def test_the_last_sql_integer_is_a_valid_position() -> None:
    assert DAY_LINES.decode(DAY_LINES.encode([MAX_POSITION])) == [MAX_POSITION]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


TAGGED = st.lists(JSON, min_size=2, max_size=2).map(lambda values: ["licenses/issued_at/desc", *values])


@given(st.one_of(JSON, TAGGED))
def test_any_hand_made_cursor_decodes_to_typed_values_or_invalid_input(values: Any) -> None:
    try:
        at, key = LICENSES.decode(hand_made(values))
    except DomainError as refused:
        assert refused.code is ErrorCode.INVALID_INPUT
    else:
        assert at.tzinfo is not None and isinstance(key, str) and key.isprintable()


@given(st.text(max_size=80))
def test_any_text_as_a_cursor_decodes_or_is_invalid_input(text: str) -> None:
    try:
        DAY_LINES.decode(text)
    except DomainError as refused:
        assert refused.code is ErrorCode.INVALID_INPUT


@pytest.mark.parametrize("first", [0, -1, 101])
def test_page_size_is_between_1_and_100(first: int) -> None:
    with pytest.raises(DomainError):
        page_size(first)
    assert page_size(100) == 100
