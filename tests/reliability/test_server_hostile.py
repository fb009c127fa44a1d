"""A served model in its own process against the hostile set and a short fuzz (the 1,100
request fuzz of the in-thread server is tests/deploy/test_fuzz.py)."""

from __future__ import annotations

import pytest

import rel_serve


@pytest.mark.slow
def test_hostile_requests_no_5xx_413_before_reading_and_bounded_memory() -> None:
    r = rel_serve.server_fuzz(100)
    assert r["passed"], r["failures"]
    assert r["responses_5xx"] == 0 and r["crashes"] == 0
    assert r["hostile_statuses"]["100 MB declared, not sent"] == 413
    assert r["memory_growth_mb"] < 2 * r["body_limit_mb"]
