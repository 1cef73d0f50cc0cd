from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import DomainError, ErrorCode
from persistence.pagination import decode_cursor, encode_cursor, page_size


def test_cursor_round_trips_instants_and_ids() -> None:
    at = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    assert decode_cursor(encode_cursor([at, "lic_1"]), 2) == [at.isoformat(), "lic_1"]


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", encode_cursor(["only-one"])])
def test_foreign_cursors_are_refused_on_the_after_field(cursor: str) -> None:
    with pytest.raises(DomainError) as refused:
        decode_cursor(cursor, 2)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "after")


@pytest.mark.parametrize("first", [0, -1, 101])
def test_page_size_is_between_1_and_100(first: int) -> None:
    with pytest.raises(DomainError):
        page_size(first)
    assert page_size(100) == 100
