"""``train.retain_host_memory``: freed activation buffers stay in the process, so a CPU step
stops page-faulting its memory back in. Each case runs in a fresh interpreter: the policy is
process-wide and cannot be undone, so it must not leak into (or come from) other tests."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the policy is a glibc malloc setting")

HERE = Path(__file__).resolve().parent

# Real training steps (LeNet-5, batch 128, channels_last as examples/mnist-fast.yaml trains):
# the activations are allocated and freed each step.
FAULTS = """
import resource, torch
from dlopt.models import create_model
torch.set_num_threads(1)
torch.manual_seed(0)
model = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(128, 1, 28, 28).to(memory_format=torch.channels_last), torch.randint(0, 10, (128,))
def faults():
    # the fewest of 3 windows of 10 steps: a burst from elsewhere in the process (seen once in
    # CI: 1,029 in one window) says nothing about the steps' own allocations
    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(3):
        step()
    counts = []
    for _ in range(3):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            step()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return min(counts)
"""


def _python(code: str, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_retaining_host_memory_removes_the_page_faults(tmp_path: Path) -> None:
    out = _python(FAULTS + """
from dlopt.train.device import retain_host_memory
before = faults()
applied = retain_host_memory()
print(__import__("json").dumps({"before": before, "applied": applied, "after": faults()}))
""", tmp_path)
    assert out["applied"] is True
    # by default the steps usually fault ~2,000 pages each, but glibc's adaptive thresholds
    # sometimes settle without faults, so only the policy's side is asserted
    assert out["after"] < 10 * 100, out  # seen: 12-438 over 10 steps (default: ~17,000-21,000)


@pytest.mark.parametrize("retain", [True, False])
def test_cpu_training_applies_the_policy_only_when_asked(retain: bool, tmp_path: Path) -> None:
    out = _python(FAULTS + f"""
import sys, json
sys.path.insert(0, {str(HERE)!r})
from train_helpers import tiny_config
from dlopt.train import device, train_run
train_run(tiny_config(epochs=1, device="cpu", retain_host_memory={retain}), run_dir="run")
print(json.dumps({{"retained": device._host_memory_retained, "after_training": faults()}}))
""", tmp_path)
    # glibc's own adaptive thresholds sometimes settle so that even unretained steps stop
    # faulting, so "off" is checked on the policy's state; "on" also by its effect
    assert out["retained"] is retain
    if retain:
        assert out["after_training"] < 10 * 100, out  # the default: ~1,700 per step
