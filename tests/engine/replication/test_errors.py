"""Replication errors: what an HTTP refusal says about retrying."""

from __future__ import annotations

import datetime
import email.utils

import pytest

from engine.replication.errors import HTTPStatusError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("soon", None), ("-5", None), ("1.5", None), ("٣", None)],
)
def test_retry_after_in_seconds(value: str, seconds: float | None) -> None:
    error = HTTPStatusError(429, "too many requests (HTTP 429)", headers={"retry-after": value})
    assert error.retry_after == seconds
    if seconds is None:
        assert str(error) == "too many requests (HTTP 429)"
    else:
        assert str(error) == f"too many requests (HTTP 429); the peer asks to wait {seconds:.0f} s before trying again"
    assert error.args[0] == "too many requests (HTTP 429)"  # what a listener writes in its response body


def test_retry_after_as_a_date() -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    error = HTTPStatusError(503, "busy", headers={"Retry-After": email.utils.format_datetime(later, usegmt=True)})
    assert error.retry_after is not None and 80 < error.retry_after <= 90
    past = HTTPStatusError(503, "busy", headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert past.retry_after == 0.0


def test_no_retry_after() -> None:
    error = HTTPStatusError(401, "unauthorized (HTTP 401)")
    assert error.retry_after is None and str(error) == "unauthorized (HTTP 401)"
