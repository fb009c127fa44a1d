"""Config and CLI fuzz at CI size: 300 hypothesis-built configs and overrides."""

from __future__ import annotations

import rel_config


def test_300_fuzzed_configs_exit_2_on_one_line_or_round_trip() -> None:
    r = rel_config.config_fuzz(300)
    assert r["passed"], r["failures"]
    assert r["examples"] == 300 and r["valid"] > 50 and r["invalid"] > 50  # both paths exercised
