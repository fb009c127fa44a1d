"""An augmentation option its op does not read is refused (it would be silently ignored), and
every option an op is said to read does change what the op does."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from dlopt.config import AugmentStep, load_config
from dlopt.data import build_augment
from dlopt.errors import ConfigError

# a different value than the default for every option an op may read
_OTHER = {"padding": 6, "degrees": 90.0, "translate": 0.4, "scale": (0.5, 0.6), "amount": 0.6, "std": 0.8,
          "size": 0.7}


@pytest.mark.parametrize("step,option,users", [
    ("{op: gaussian_noise, amount: 0.5, p: 1.0}", "amount", "brightness, contrast, salt_pepper"),
    ("{op: crop, degrees: 45, std: 3}", "degrees", "rotate, affine"),
    ("{op: hflip, padding: 4}", "padding", "crop"),
    ("{op: rotate, translate: 0.2}", "translate", "affine"),
    ("{op: cutout, std: 0.3}", "std", "gaussian_noise"),
])
def test_an_option_the_op_does_not_read_is_refused(step, option, users):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"data.augment=[{{op: hflip}}, {step}]"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("data.augment.1")
    assert f"{option} is not used by augmentation op" in msg and f"it applies to {users}" in msg


def test_train_refuses_it_in_one_line(tmp_path):
    from dlopt.cli import app

    cfg = tmp_path / "run.yaml"
    cfg.write_text("data: {name: mnist, subset: 100}\nmodel: {name: lenet5}\n")
    res = CliRunner().invoke(app, ["train", str(cfg), "--run-dir", str(tmp_path / "r"),
                                   "--set", "data.augment=[{op: gaussian_noise, amount: 0.5}]"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "'gaussian_noise'" in lines[0], res.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("op", sorted(AugmentStep.USES))
def test_every_option_an_op_takes_changes_its_output(op):
    x = torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(0))

    def run(**options):
        torch.manual_seed(1)
        return build_augment([{"op": op, "p": 1.0, **options}])(x)

    base = run()
    for option in AugmentStep.USES[op]:
        assert not torch.equal(run(**{option: _OTHER[option]}), base), f"{op} ignores {option}"


def test_a_resolved_step_is_read_back_as_is():
    """A run's config.yaml names every field of each step: it re-reads, as optimizer sections do."""
    for op in AugmentStep.USES:
        written = AugmentStep(op=op).model_dump(mode="json")
        assert AugmentStep.model_validate(written).op == op
