"""npz: image layouts and integer pixels. Channels-last arrays (N, H, W, C) are transposed to
(N, C, H, W); integer images are pixels scaled as the image-folder reader scales them (0..255
by 255, 0..65535 by 65535); integer (N, H, W) in 0..255 are grayscale images as in IDX files."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.data import load_dataset

from data_helpers import load_error

Y = np.arange(40) % 2


def _pixels(shape: tuple[int, ...], top: int = 256, dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, top, shape).astype(dtype)


def _all_inputs(b) -> np.ndarray:
    return np.concatenate([b.train.x.numpy(), b.val.x.numpy(), b.test.x.numpy()])


def _load(tmp_path, x: np.ndarray, **arrays):
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=Y, **arrays)
    return load_dataset(f"npz:{p}", seed=0)


@pytest.mark.parametrize("channels", [3, 1, 4])
def test_channels_last_images_are_read_as_channels_first(tmp_path, channels):
    x = _pixels((40, 8, 6, channels))
    b = _load(tmp_path, x)
    first = _load(tmp_path, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    assert b.info.input_shape == (channels, 8, 6)
    assert np.array_equal(_all_inputs(b), _all_inputs(first))  # same seed: same split


def test_channels_last_x_test_follows_x(tmp_path):
    x, x_test = _pixels((40, 8, 8, 3)), _pixels((10, 8, 8, 3))
    b = _load(tmp_path, x, x_test=x_test, y_test=Y[:10])
    assert b.info.input_shape == (3, 8, 8)
    assert np.allclose(b.test.x.numpy(), x_test.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


def test_an_ambiguous_layout_stays_channels_first(tmp_path):
    assert _load(tmp_path, _pixels((40, 3, 8, 3))).info.input_shape == (3, 8, 3)
    assert _load(tmp_path, _pixels((40, 4, 9, 9))).info.input_shape == (4, 9, 9)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16])
def test_8bit_pixels_in_a_wider_integer_type_are_scaled_images(tmp_path, dtype):
    x = _pixels((40, 8, 8))
    want = _all_inputs(_load(tmp_path, x))
    for wide in (x.astype(dtype), x[:, None].astype(dtype)):  # (N, H, W) and (N, 1, H, W)
        b = _load(tmp_path, wide)
        assert b.info.input_shape == (1, 8, 8)
        assert np.array_equal(_all_inputs(b), want)


def test_integers_beyond_8_bits_stay_a_sequence_and_16bit_images_are_scaled(tmp_path):
    audio = _pixels((40, 2, 50), top=30000, dtype=np.int16) - 15000
    b = _load(tmp_path, audio)
    assert b.info.input_shape == (2, 50) and float(b.train.x.abs().max()) > 255
    images = _pixels((40, 1, 8, 8), top=65536, dtype=np.uint16)
    b = _load(tmp_path, images)
    assert b.info.input_shape == (1, 8, 8)
    assert float(b.train.x.max()) <= 1.0 and float(b.train.x.max()) > 0.9


def test_integer_images_beyond_16_bits_are_refused(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=_pixels((40, 1, 8, 8), top=70000, dtype=np.int32) - 100, y=Y)
    msg = load_error(f"npz:{p}")
    assert msg.startswith(f"npz file {p}: integer images hold values -")
    assert "allowed: 8-bit (0..255) or 16-bit (0..65535) pixels, or a float array" in msg


def test_binary_integer_sequences_stay_unscaled_sequences(tmp_path):
    one_hot = np.eye(4, dtype=np.int64)[_pixels((40, 20), top=4)].transpose(0, 2, 1)  # (N, 4, L)
    b = _load(tmp_path, one_hot)
    assert b.info.input_shape == (4, 20)
    assert set(np.unique(_all_inputs(b))) == {0.0, 1.0}
