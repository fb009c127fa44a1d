"""Batched augmentation on the training device, built from ``AugmentStep`` configs.

Ops come from ``kornia.augmentation`` and run on whole ``(N, C, H, W)`` float batches.
Brightness/contrast clip to [0, 1] only when the training inputs lie in [0, 1] (pixels scaled,
or minmax); on other inputs (zscore, float data) they shift/scale without clipping, since
clipping would flatten every image into [0, 1]. ``salt_pepper`` sets pixels to 0 and 1 and so
needs inputs in [0, 1]. Noise is additive and not clipped.
The returned module is the identity in eval mode. Only ``gaussian_noise`` also applies to
tables and sequences; the other ops need image-shaped inputs and say so with a ConfigError.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from dlopt.errors import ConfigError
from dlopt.registry import Registry

__all__ = ["AUGMENT_OPS", "Augment", "build_augment", "check_augment"]

#: op name -> factory(step) -> nn.Module. Info: image_only.
AUGMENT_OPS: Registry = Registry("augmentation op", error=ConfigError)


def _steps(steps: Iterable[Any]) -> list[Any]:
    """AugmentSteps (dicts are validated into AugmentSteps so defaults apply)."""
    from pydantic import ValidationError

    from dlopt.config import AugmentStep, format_validation_error

    try:
        return [s if isinstance(s, AugmentStep) else AugmentStep.model_validate(s) for s in steps]
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix="data.augment.")) from None


@AUGMENT_OPS.register("hflip", image_only=True)
def _hflip(step: Any) -> nn.Module:
    from kornia.augmentation import RandomHorizontalFlip

    return RandomHorizontalFlip(p=step.p)


class _PadCrop(nn.Module):
    """Pad by ``padding`` then crop back to the input size (kornia RandomCrop needs the size,
    which is only known from the batch)."""

    def __init__(self, padding: int, p: float) -> None:
        super().__init__()
        self.padding, self.p = padding, p
        self._crops: dict[tuple[int, int], nn.Module] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kornia.augmentation import RandomCrop

        hw = (int(x.shape[-2]), int(x.shape[-1]))
        if hw not in self._crops:
            self._crops[hw] = RandomCrop(hw, padding=self.padding, p=self.p)
        return self._crops[hw](x)


@AUGMENT_OPS.register("crop", image_only=True)
def _crop(step: Any) -> nn.Module:
    return _PadCrop(step.padding, step.p)


@AUGMENT_OPS.register("rotate", image_only=True)
def _rotate(step: Any) -> nn.Module:
    from kornia.augmentation import RandomRotation

    return RandomRotation(degrees=step.degrees, p=step.p)


@AUGMENT_OPS.register("affine", image_only=True)
def _affine(step: Any) -> nn.Module:
    from kornia.augmentation import RandomAffine

    return RandomAffine(degrees=step.degrees, translate=(step.translate, step.translate),
                        scale=tuple(step.scale), p=step.p)


@AUGMENT_OPS.register("brightness", image_only=True, clips=True)
def _brightness(step: Any) -> nn.Module:
    from kornia.augmentation import RandomBrightness

    # brightness/contrast only: ColorJitter's hue/saturation need 3 channels (grayscale sets)
    return RandomBrightness(brightness=(1 - step.amount, 1 + step.amount), p=step.p)


@AUGMENT_OPS.register("contrast", image_only=True, clips=True)
def _contrast(step: Any) -> nn.Module:
    from kornia.augmentation import RandomContrast

    return RandomContrast(contrast=(1 - step.amount, 1 + step.amount), p=step.p)


class _AnyShape(nn.Module):
    """Run an image op on (N, *) inputs by viewing each sample as a 1x1xF image."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self.op(x)
        return self.op(x.reshape(len(x), 1, 1, -1)).reshape(x.shape)


@AUGMENT_OPS.register("gaussian_noise", image_only=False)
def _gaussian_noise(step: Any) -> nn.Module:
    from kornia.augmentation import RandomGaussianNoise

    return _AnyShape(RandomGaussianNoise(std=step.std, p=step.p))


@AUGMENT_OPS.register("salt_pepper", image_only=True, unit_range_only=True)
def _salt_pepper(step: Any) -> nn.Module:
    from kornia.augmentation import RandomSaltAndPepperNoise

    # amount = fraction of pixels set to 0 or 1
    return RandomSaltAndPepperNoise(amount=step.amount, p=step.p)


@AUGMENT_OPS.register("cutout", image_only=True)
def _cutout(step: Any) -> nn.Module:
    from kornia.augmentation import RandomErasing

    # size = side of the erased square as a fraction of the image side
    area = step.size**2
    return RandomErasing(scale=(area, area), ratio=(1.0, 1.0), value=0.0, p=step.p)


class Augment(nn.Module):
    """The configured ops in order; identity in eval mode."""

    def __init__(self, ops: list[tuple[str, nn.Module, bool]]) -> None:
        super().__init__()
        self.names = [name for name, _, _ in ops]
        self.image_only = [flag for _, _, flag in ops]
        self.ops = nn.ModuleList(op for _, op, _ in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        for name, image_only, op in zip(self.names, self.image_only, self.ops):
            if image_only and x.dim() != 4:
                raise ConfigError(
                    f"data.augment op {name!r} needs image batches (N, C, H, W); got shape {tuple(x.shape)}"
                )
            x = op(x)
        return x

    def extra_repr(self) -> str:
        return ", ".join(self.names)


def _unit(input_range: tuple[float, float] | None) -> bool:
    """Whether inputs in ``input_range`` lie in [0, 1] (None: not known, taken as images in [0, 1])."""
    return input_range is None or (input_range[0] >= 0.0 and input_range[1] <= 1.0)


def check_augment(steps: Iterable[Any], input_shape: tuple[int, ...], *,
                  input_range: tuple[float, float] | None = None) -> None:
    """ConfigError when an image-only op is asked for non-image inputs, or an op that needs
    inputs in [0, 1] for training inputs spanning ``input_range`` beyond it."""
    for step in _steps(steps):
        info = AUGMENT_OPS.get(step.op).info
        if info["image_only"] and len(input_shape) != 3:
            allowed = [e.name for e in AUGMENT_OPS if not e.info["image_only"]]
            raise ConfigError(
                f"data.augment op {step.op!r} needs image inputs (C, H, W), the data have shape "
                f"{tuple(input_shape)}; ops for such data: {', '.join(allowed)}"
            )
        if info.get("unit_range_only") and not _unit(input_range):
            lo, hi = input_range  # type: ignore[misc]
            raise ConfigError(
                f"data.augment op {step.op!r} sets pixels to 0 and 1, so it needs inputs in [0, 1]; "
                f"the training inputs span [{lo:.3g}, {hi:.3g}] (preprocessing: use the pixel "
                f"scaling or minmax, or the op gaussian_noise)"
            )


def build_augment(steps: Iterable[Any], *, input_shape: tuple[int, ...] | None = None,
                  input_range: tuple[float, float] | None = None) -> Augment | None:
    """An :class:`Augment` module for ``steps`` (AugmentStep or dicts), or None when empty.

    Call it on training batches already on the device; ``.eval()`` turns it off. With
    ``input_shape`` the ops are checked against the data up front. ``input_range`` (the
    training inputs' min and max; None: images in [0, 1]) decides whether brightness and
    contrast clip to [0, 1].
    """
    parsed = _steps(steps)
    if not parsed:
        return None
    if input_shape is not None:
        check_augment(parsed, input_shape, input_range=input_range)
    ops: list[tuple[str, nn.Module, bool]] = []
    for step in parsed:
        entry = AUGMENT_OPS.get(step.op)
        factory: Callable[[Any], nn.Module] = entry.factory
        op = factory(step)
        if entry.info.get("clips"):
            op.clip_output = _unit(input_range)  # kornia reads it at every call
        ops.append((step.op, op, bool(entry.info["image_only"])))
    return Augment(ops)
