"""The NaN/Inf guard: stop names the step and the tensor within one step and never writes a
non-finite checkpoint; skip skips exactly the bad steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlopt.errors import NonFiniteError
from dlopt.train import fit, read_checkpoint
from dlopt.train.techniques import NonFiniteGuard


class NaNGradAt(nn.Module):
    """A linear classifier whose parameter ``p`` gets a NaN gradient (finite loss) on the
    ``bad``-th training forward: ``0 * sqrt(|p|)`` at ``p = 0``."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)
        self.p = nn.Parameter(torch.ones(1))
        self.bad, self.calls = bad, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        if self.training:
            self.calls += 1
            if self.calls == self.bad:
                return out + 0 * (self.p - self.p.detach()).abs().sqrt()
        return out


class NaNOutputFrom(nn.Module):
    """Outputs NaN from the ``bad``-th training forward on (a diverged model)."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)
        self.bad, self.calls = bad, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.bad:
                return out * float("nan")
        return out


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    return {"train": (x, x[:, 0].gt(0).long() + x[:, 1].gt(0).long()), "val": (x[:16], torch.zeros(16).long())}


def _fit(model, tmp_path, **kw):
    return fit(model, _data(), run_dir=tmp_path / "r", epochs=2, batch_size=16, progress=False,
               optimizer="sgd", lr=0.1, every_steps=1, **kw)


def test_stop_names_step_and_parameter_and_saves_nothing_bad(tmp_path) -> None:
    with pytest.raises(NonFiniteError, match=r"gradient of parameter 'p'.*at step 3 \(epoch 1\)"):
        _fit(NaNGradAt(3), tmp_path)
    assert read_checkpoint(tmp_path / "r").manifest["step"] == 2


def test_stop_on_nan_loss_names_the_loss(tmp_path) -> None:
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(nan\) at step 2"):
        fit(NaNOutputFrom(2), _data(), run_dir=tmp_path / "r", epochs=1, batch_size=16, progress=False)


def test_skip_skips_exactly_the_bad_step(tmp_path) -> None:
    res = _fit(NaNGradAt(3), tmp_path, nonfinite="skip")
    assert res.summary["nonfinite_skipped"] == 1 and res.summary["steps"] == 12
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_skip_gives_up_on_a_diverged_run(tmp_path) -> None:
    with pytest.raises(NonFiniteError, match="consecutive steps"):
        fit(NaNOutputFrom(2), _data(), run_dir=tmp_path / "r", epochs=2, batch_size=4, progress=False,
            nonfinite="skip")


class _LaggedGuard(NonFiniteGuard):
    """The accelerator mode (flag read one step late), forced on CPU."""

    def on_fit_start(self, state) -> None:
        super().on_fit_start(state)
        self._lagged = True


def test_lagged_mode_still_stops_before_writing_a_checkpoint(tmp_path) -> None:
    """The bad step's checkpoint flushes the pending flag first: the error names step 3,
    and the last checkpoint stays at step 2."""
    from dlopt.data import Split, make_loader
    from dlopt.train import Hooks, State, run
    from dlopt.train.callbacks import Checkpointing

    x, y = _data()["train"]
    model = NaNGradAt(3)
    handlers = [_LaggedGuard("stop"), Checkpointing(tmp_path / "ck", every_steps=1)]
    state = State(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  loss_fn=nn.functional.cross_entropy, loader=make_loader(Split(x, y), batch_size=16, shuffle=True),
                  device=torch.device("cpu"), epochs=1, handlers=handlers)
    with pytest.raises(NonFiniteError, match=r"parameter 'p'.*step 3"):
        run(state, Hooks(handlers))
    assert read_checkpoint(tmp_path / "ck").manifest["step"] == 2
