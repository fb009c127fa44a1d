"""Every augmentation op: shape kept, value range, identity in eval mode, config errors."""

from __future__ import annotations

import pytest
import torch

from dlopt.config import AugmentStep
from dlopt.data import build_augment
from dlopt.data.augment import AUGMENT_OPS
from dlopt.errors import ConfigError

ALL_OPS = AugmentStep.model_fields["op"].annotation.__args__


def _batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(32, 1, 12, 12)


def test_registry_covers_every_config_op():
    assert set(AUGMENT_OPS.names()) == set(ALL_OPS)


@pytest.mark.parametrize("op", ALL_OPS)
def test_op_changes_training_batch_keeps_shape_and_is_identity_in_eval(op):
    x = _batch()
    aug = build_augment([AugmentStep(op=op, p=1.0)])
    torch.manual_seed(1)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(y, x)
    if op != "gaussian_noise":  # geometric/photometric ops and clipping keep [0, 1]
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    aug.eval()
    assert torch.equal(aug(x), x)


def test_gaussian_noise_std_and_any_shape():
    aug = build_augment([{"op": "gaussian_noise", "p": 1.0, "std": 0.2}])
    x = torch.zeros(64, 40)
    y = aug(x)
    assert y.shape == x.shape and float(y.std()) == pytest.approx(0.2, rel=0.1)


def test_salt_pepper_amount_and_cutout_size():
    x = torch.full((16, 1, 20, 20), 0.5)
    sp = build_augment([{"op": "salt_pepper", "p": 1.0, "amount": 0.2}])(x)
    changed = float((sp != 0.5).float().mean())
    assert 0.1 < changed < 0.3 and set(torch.unique(sp[sp != 0.5]).tolist()) <= {0.0, 1.0}
    cut = build_augment([{"op": "cutout", "p": 1.0, "size": 0.5}])(x)
    assert float((cut == 0).float().mean()) == pytest.approx(0.25, abs=0.05)


def test_p_zero_is_identity_and_composition_runs_in_order():
    x = _batch()
    assert torch.equal(build_augment([{"op": "rotate", "p": 0.0}])(x), x)
    aug = build_augment([{"op": "crop"}, {"op": "hflip"}, {"op": "brightness", "amount": 0.2}])
    assert aug.names == ["crop", "hflip", "brightness"] and aug(x).shape == x.shape


def test_empty_steps_give_none():
    assert build_augment([]) is None


def test_image_ops_on_tabular_data_are_config_errors():
    with pytest.raises(ConfigError, match=r"'rotate' needs image inputs .* \(4,\); ops for such data: gaussian_noise"):
        build_augment([{"op": "rotate"}], input_shape=(4,))
    aug = build_augment([{"op": "hflip"}])
    with pytest.raises(ConfigError, match=r"'hflip' needs image batches"):
        aug(torch.zeros(8, 4))


def test_load_data_checks_augment_against_the_data():
    from dlopt.config import load_config
    from dlopt.data import load_data

    cfg = load_config(overrides=["data.name=iris", "data.augment=[{op: cutout}]"])
    with pytest.raises(ConfigError, match="cutout"):
        load_data(cfg.data)


def test_bad_step_dict_is_one_line_config_error():
    with pytest.raises(ConfigError) as info:
        build_augment([{"op": "flip"}])
    assert "data.augment" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("op", ["brightness", "contrast"])
def test_brightness_and_contrast_clip_only_inputs_in_unit_range(op):
    """zscore'd images span about [-0.4, 2.8]: clipping them to [0, 1] would flatten every
    training image; [0, 1] images stay clipped."""
    z = (_batch() - 0.5) * 4  # [-2, 2]
    aug = build_augment([{"op": op, "p": 1.0, "amount": 0.3}], input_shape=(1, 12, 12),
                        input_range=(float(z.min()), float(z.max())))
    torch.manual_seed(1)
    y = aug(z)
    assert float(y.min()) < -1.0 and float(y.max()) > 1.0 and not torch.equal(y, z)
    unit = build_augment([{"op": op, "p": 1.0, "amount": 0.3}], input_shape=(1, 12, 12), input_range=(0.0, 1.0))
    torch.manual_seed(1)
    y = unit(_batch() * 1.0)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_salt_pepper_needs_inputs_in_unit_range():
    with pytest.raises(ConfigError, match=r"'salt_pepper' sets pixels to 0 and 1.*span \[-0.424, 2.82\]"):
        build_augment([{"op": "salt_pepper"}], input_shape=(1, 12, 12), input_range=(-0.4242, 2.8215))
    assert build_augment([{"op": "salt_pepper"}], input_shape=(1, 12, 12), input_range=(0.0, 1.0)) is not None


def test_load_data_checks_the_value_range_of_the_training_images():
    from dlopt.config import load_config
    from dlopt.data import load_data

    cfg = load_config(overrides=["data.subset=200", "data.test_subset=50", "data.preprocess=[{op: zscore}]",
                                 "data.augment=[{op: salt_pepper}]"])
    with pytest.raises(ConfigError, match="salt_pepper"):
        load_data(cfg.data)
    cfg = load_config(overrides=["data.subset=200", "data.test_subset=50", "data.augment=[{op: salt_pepper}]"])
    bundle = load_data(cfg.data)  # MNIST pixels / 255, held as uint8
    assert bundle.train.pixels is not None and bundle.train.value_range() == (0.0, 1.0)
