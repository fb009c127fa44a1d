"""Shared deployment fixtures: an MNIST slice, an exported LeNet-5, a trained run, and a real
uvicorn server on 127.0.0.1 (random free port) running in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import torch

MNIST_DATA = {"name": "mnist", "subset": 600, "test_subset": 300}


@pytest.fixture(scope="session")
def mnist():
    """A small real MNIST bundle (raw uint8 images are ``mnist_raw``)."""
    from dlopt.data import load_dataset

    return load_dataset("mnist", subset=MNIST_DATA["subset"], test_subset=MNIST_DATA["test_subset"])


@pytest.fixture(scope="session")
def mnist_raw(mnist) -> np.ndarray:
    """Raw uint8 test images (N, 1, 28, 28), as a client would send them."""
    return np.rint(mnist.test.x.numpy() * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def lenet(tmp_path_factory, mnist):
    """(model, path) of a LeNet-5 with seeded random weights, exported with MNIST metadata."""
    from dlopt.deploy import export_onnx
    from dlopt.models import create_model

    torch.manual_seed(0)
    model = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10).eval()
    path = tmp_path_factory.mktemp("lenet") / "lenet.onnx"
    export_onnx(model, mnist.test.x[:2], path, check_inputs=mnist.test.x, metadata={
        "class_names": mnist.info.class_names, "preprocess": mnist.preprocessor,
        "source_run": "tests", "model": {"name": "lenet5", "options": {}}, "dataset": MNIST_DATA,
    })
    return model, path


@pytest.fixture(scope="session")
def lenet_model(lenet):
    """The exported LeNet-5 loaded through the safe ONNX Runtime loader."""
    from dlopt.deploy import OnnxModel

    return OnnxModel.load(lenet[1])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A real one-epoch LeNet-5 run on an MNIST slice (dlopt.train.fit)."""
    import dlopt
    from dlopt.train import recipe_config

    cfg = recipe_config(data=dict(MNIST_DATA), model={"name": "lenet5"}, epochs=1, progress=False,
                        lr=3e-3, batch_size=64)
    run_dir = tmp_path_factory.mktemp("runs") / "lenet"
    dlopt.fit(config=cfg, run_dir=run_dir)
    return run_dir


def _free_socket() -> socket.socket:
    """A socket bound to 127.0.0.1 on a free port (uvicorn listens on it)."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP; with proto 0 every response waits ~40 ms (Nagle + delayed ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v1/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout} s")


@contextlib.contextmanager
def _running_server(model, **settings) -> Iterator[str]:
    """Serve ``model`` with real uvicorn in a thread; yields the base URL, stops it after."""
    import uvicorn

    from dlopt.deploy import ServeSettings, create_app

    app = create_app(model, ServeSettings(**settings))
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        _wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


# helpers as fixtures: test modules here are not a package, so they cannot import conftest
@pytest.fixture(scope="session")
def running_server():
    """``running_server(model, **ServeSettings) -> context manager yielding the base URL``."""
    return _running_server


@pytest.fixture(scope="session")
def free_socket():
    return _free_socket


@pytest.fixture(scope="session")
def wait_ready():
    return _wait_ready
