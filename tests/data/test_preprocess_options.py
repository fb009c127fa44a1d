"""A preprocessing option its op does not read is refused (``zscore`` with ``n_components``
trained a plain z-score without a word); the options an op reads still pass, and a written
config, which names every field, still reads back."""

from __future__ import annotations

import pytest

from dlopt.config import PreprocessStep, load_config
from dlopt.errors import ConfigError


@pytest.mark.parametrize("step,option,users", [
    ("{op: zscore, n_components: 3}", "n_components", "pca, lda"),
    ("{op: minmax, strategy: median}", "strategy", "impute"),
    ("{op: pca, strategy: median}", "strategy", "impute"),
    ("{op: impute, n_components: 2}", "n_components", "pca, lda"),
])
def test_an_option_the_op_does_not_read_is_refused(step, option, users):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.name=iris", f"data.preprocess=[{{op: zscore}}, {step}]"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("data.preprocess.1")
    assert f"{option} is not used by preprocessing op" in msg and f"it applies to {users}" in msg


def test_options_an_op_reads_pass_and_a_written_step_reads_back():
    cfg = load_config(overrides=["data.name=iris", "data.preprocess=[{op: impute, strategy: median}, "
                                 "{op: zscore}, {op: pca, n_components: 2}]"])
    assert [s.strategy for s in cfg.data.preprocess][0] == "median"
    assert cfg.data.preprocess[2].n_components == 2
    for step in cfg.data.preprocess:  # as config.yaml records it: every field named
        assert PreprocessStep(**step.model_dump()) == step
