"""The receivers' read of the configured cohort dimensions: at most once per period."""

from __future__ import annotations

import pytest

from tracestore.ingest import CachedCohortDimensions


class _Table:
    def __init__(self) -> None:
        self.keys = ["user.tier"]
        self.reads = 0

    def __call__(self) -> list[str]:
        self.reads += 1
        if self.keys is None:
            raise RuntimeError("database down")
        return list(self.keys)


def test_a_change_is_read_once_the_period_has_passed_and_not_before() -> None:
    table, now = _Table(), [100.0]
    keys = CachedCohortDimensions(table, refresh_seconds=10, clock=lambda: now[0])

    assert keys() == ("user.tier",)
    table.keys = ["customer.region", "user.tier"]
    now[0] = 109.9
    assert [keys(), keys()] == [("user.tier",), ("user.tier",)]
    assert table.reads == 1

    now[0] = 110.0
    assert keys() == ("customer.region", "user.tier")
    assert table.reads == 2


def test_a_failed_read_raises_and_the_next_request_reads_again() -> None:
    table, now = _Table(), [0.0]
    keys = CachedCohortDimensions(table, refresh_seconds=0, clock=lambda: now[0])
    table.keys = None  # type: ignore[assignment]

    with pytest.raises(RuntimeError):
        keys()
    table.keys = ["language"]
    assert keys() == ("language",)
    assert table.reads == 2
