"""Registry API and one-line ModelErrors for bad names, options and values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlopt.errors import DloptError, ModelError
from dlopt.models import (
    MODELS,
    check_model_options,
    create_model,
    list_models,
    model_options,
    register_model,
    summary,
)

ZOO = ["cnn1d", "convnet", "gru", "lenet5", "lstm", "mlp", "msresnet", "resnet", "vit"]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    assert isinstance(exc.value, DloptError) and exc.value.exit_code == 2
    return msg


def test_list_models():
    assert list_models() == ZOO


def test_model_options_are_the_factory_defaults():
    opts = model_options("lenet5")
    assert "input_shape" not in opts and "num_classes" not in opts
    assert opts["activation"] == "relu" and opts["pool"] == "max" and opts["channels"] is None
    assert model_options("resnet")["depth"] == 8
    for name in ZOO:
        check_model_options(name, model_options(name))  # the defaults are valid


def test_unknown_model_lists_valid_names():
    with pytest.raises(ModelError) as exc:
        check_model_options("lenet", {})
    msg = _one_line(exc)
    assert "'lenet'" in msg and all(n in msg for n in ZOO)
    with pytest.raises(ModelError):
        create_model("lenet", input_shape=(1, 28, 28), num_classes=10)


def test_unknown_option_names_it_and_lists_valid_ones():
    with pytest.raises(ModelError) as exc:
        check_model_options("mlp", {"widht": 64})
    msg = _one_line(exc)
    assert "'widht'" in msg and all(o in msg for o in model_options("mlp"))


def test_data_arguments_are_not_options():
    with pytest.raises(ModelError) as exc:
        check_model_options("mlp", {"num_classes": 3})
    assert "num_classes" in _one_line(exc)


BAD_VALUES = [
    ("mlp", "dropout", 1.0),
    ("mlp", "dropout", -0.1),
    ("lenet5", "width", -1),
    ("mlp", "width", 0.5),
    ("lenet5", "activation", "swish"),
    ("convnet", "norm", "groupnorm"),
    ("mlp", "init", "xavier"),
    ("lenet5", "pool", "min"),
    ("resnet", "depth", 9),
    ("resnet", "depth", 2),
    ("msresnet", "fuse", "sum"),
    ("msresnet", "scales", [1, 1]),
    ("mlp", "hidden", [64, 0]),
    ("lenet5", "channels", []),
    ("gru", "bidirectional", "yes"),
    ("vit", "heads", 0),
    ("cnn1d", "depth", True),
]


@pytest.mark.parametrize(("name", "option", "value"), BAD_VALUES, ids=str)
def test_bad_value_is_one_line_naming_option_value_and_rule(name, option, value):
    with pytest.raises(ModelError) as exc:
        check_model_options(name, {option: value})
    msg = _one_line(exc)
    assert repr(option) in msg and repr(value) in msg and "allowed:" in msg
    with pytest.raises(ModelError):  # create_model checks first, too
        create_model(name, input_shape=(1, 28, 28), num_classes=10, **{option: value})


@pytest.mark.parametrize(
    ("name", "shape", "options", "needle"),
    [
        ("lenet5", (1, 8, 8), {}, "(1, 8, 8)"),
        ("lenet5", (40,), {}, "(40,)"),
        ("vit", (1, 28, 28), {"patch_size": 5}, "patch_size"),
        ("vit", (1, 28, 28), {"width": 30, "heads": 4}, "heads"),
        ("lenet5", (1, 28, 28), {"channels": [6, 16, 32]}, "channels"),
        ("resnet", (1, 28, 28), {"channels": [16, 16]}, "channels"),
        ("msresnet", (1, 8, 8), {"scales": [1, 16]}, "scales"),
        ("cnn1d", (1, 28, 28), {}, "(1, 28, 28)"),
        ("gru", (1, 2, 3, 4), {}, "(1, 2, 3, 4)"),
        ("mlp", (0, 3), {}, "input_shape"),
    ],
)
def test_shape_dependent_errors_surface_in_create_model(name, shape, options, needle):
    with pytest.raises(ModelError) as exc:
        create_model(name, input_shape=shape, num_classes=10, **options)
    msg = _one_line(exc)
    assert needle in msg and repr(name) in msg


def test_bad_num_classes():
    with pytest.raises(ModelError) as exc:
        create_model("mlp", input_shape=(4,), num_classes=0)
    assert "num_classes" in _one_line(exc)


def test_yaml_style_values_are_accepted():
    # YAML gives lists, ints for floats: both are fine
    model = create_model("msresnet", input_shape=(1, 16, 16), num_classes=2, scales=[1, 2],
                         width=1, depth=1)
    assert len(model.branches) == 2


def test_register_a_user_model():
    @register_model("test_user_linear", description="a user model", default_input=(5,))
    def _factory(*, input_shape, num_classes, bias: bool = True) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes, bias=bias))

    try:
        assert "test_user_linear" in list_models()
        assert model_options("test_user_linear") == {"bias": True}
        with pytest.raises(ModelError):
            check_model_options("test_user_linear", {"width": 3})
        model = create_model("test_user_linear", input_shape=(5,), num_classes=2, bias=False)
        assert summary(model, (5,)).params == 10
        with pytest.raises(ValueError, match="registered twice"):
            register_model("test_user_linear")(_factory)
    finally:
        MODELS._entries.pop("test_user_linear", None)


def test_register_rejects_factory_without_data_arguments():
    with pytest.raises(TypeError, match="input_shape"):
        register_model("test_bad_factory")(lambda *, num_classes: nn.Identity())
    assert "test_bad_factory" not in list_models()


def test_created_model_is_float32_and_in_train_mode():
    model = create_model("convnet", input_shape=(1, 28, 28), num_classes=10)
    assert model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
