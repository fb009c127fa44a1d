"""Every zoo model through the same contract: shapes, finiteness, summary, gradients, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlopt.models import create_model, list_models, model_entry, summary

# (model, input_shape, options): every model on the inputs it is meant for
CASES = [
    ("mlp", (1, 28, 28), {}),
    ("mlp", (13,), {"depth": 1, "width": 16}),
    ("lenet5", (1, 28, 28), {}),
    ("lenet5", (3, 32, 32), {}),
    ("lenet5", (28, 28), {}),
    ("convnet", (1, 28, 28), {}),
    ("convnet", (3, 16, 16), {"width": 0.5}),
    ("resnet", (1, 28, 28), {}),
    ("resnet", (3, 16, 16), {"depth": 14, "width": 0.5}),
    ("msresnet", (1, 28, 28), {}),
    ("msresnet", (3, 16, 16), {"fuse": "attention", "scales": [1, 4], "depth": 1}),
    ("vit", (1, 28, 28), {}),
    ("vit", (3, 32, 32), {"width": 32, "depth": 2, "heads": 2}),
    ("cnn1d", (40,), {}),
    ("cnn1d", (2, 40), {"depth": 2, "width": 16}),
    ("gru", (40,), {}),
    ("gru", (3, 20), {"bidirectional": True, "depth": 2}),
    ("gru", (1, 28, 28), {"width": 32}),
    ("lstm", (40,), {}),
    ("lstm", (1, 28, 28), {"width": 32, "bidirectional": True}),
]


def test_cases_cover_every_model():
    assert {name for name, _, _ in CASES} == set(list_models())


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=lambda v: str(v))
def test_forward_summary_and_gradients(name, shape, options):
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=7, **options)
    x = torch.randn(5, *shape)
    logits = model(x)
    assert logits.shape == (5, 7)
    assert torch.isfinite(logits).all()

    stats = summary(model, shape)
    assert stats.params == sum(p.numel() for p in model.parameters()) > 0
    assert stats.macs > stats.params // 4 > 0  # every layer does work on each sample
    assert stats.size_bytes >= 4 * stats.params

    F.cross_entropy(logits, torch.arange(5) % 7).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {pname}"
        assert torch.isfinite(p.grad).all(), pname
    first = next(p for p in model.parameters() if p.dim() > 1)
    assert first.grad.abs().sum() > 0  # gradient flows back to the input layer


# lr per model: recurrent nets need a larger step to move in 20 updates
_LR = {"gru": 1e-2, "lstm": 2e-2, "msresnet": 5e-3}
# the costly conv nets learn at half width just as well; keeps the test cheap on 2 cores
_SMALL = {"convnet": {"width": 0.5}, "resnet": {"width": 0.5},
          "msresnet": {"width": 0.5, "depth": 1}}


@pytest.mark.parametrize("name", sorted(list_models()))
def test_learns_a_real_batch(name, mnist_batch, mnist1d_batch):
    """20 Adam steps on 16 real samples cut the loss clearly (catches dead layers/wiring)."""
    shape = model_entry(name).info["default_input"]
    x, y = mnist1d_batch if shape == (40,) else mnist_batch
    x, y = x[:16], y[:16]
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=10, **_SMALL.get(name, {}))
    opt = torch.optim.Adam(model.parameters(), lr=_LR.get(name, 3e-3))
    model.eval()
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    model.train()
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    assert after < 0.85 * before, (before, after)


@pytest.mark.parametrize("name", ["lenet5", "convnet", "resnet", "msresnet", "vit"])
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    model = create_model(name, input_shape=(3, 16, 16), num_classes=4).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_batch_of_one_in_eval_mode():
    # BatchNorm models must serve single requests
    model = create_model("resnet", input_shape=(1, 28, 28), num_classes=3).eval()
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 3)
