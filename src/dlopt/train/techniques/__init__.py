"""Training techniques: each a plain function plus a small object hooked to loop events.

========================  =======================  ==========================================
technique                 object                   plain function
========================  =======================  ==========================================
mixed precision           Precision                autocast_context, resolve_precision
torch.compile             Compile                  compile_model
channels_last             ChannelsLast             to_channels_last
pool before activation    PoolFirst                pool_first, restore_pool_order
augmentation              Augmentation             dlopt.data.build_augment
mixup / cutmix            Mixup / CutMix           mixup_batch / cutmix_batch, mixed_loss
L1 penalty                L1Penalty                l1_penalty
gradient clipping         GradClip                 clip_gradients
gradient accumulation     GradAccumulation         accumulation_steps
EMA of weights            EMA                      ema_model
NaN/Inf guard             NonFiniteGuard           finite_flag, first_nonfinite
freeze / unfreeze         Unfreeze                 freeze, frozen_names
========================  =======================  ==========================================

Label smoothing lives in the loss (``dlopt.train.losses``), weight decay in the optimizer.
"""

from __future__ import annotations

from dlopt.train.techniques.augment import Augmentation
from dlopt.train.techniques.channels_last import ChannelsLast, to_channels_last
from dlopt.train.techniques.clipping import GradClip, clip_gradients
from dlopt.train.techniques.compile import Compile, compile_model
from dlopt.train.techniques.cutmix import CutMix, cutmix_batch, cutmix_box
from dlopt.train.techniques.ema import EMA, ema_model
from dlopt.train.techniques.freeze import Unfreeze, freeze, frozen_names
from dlopt.train.techniques.grad_accum import GradAccumulation, accumulation_steps
from dlopt.train.techniques.l1 import L1Penalty, l1_penalty
from dlopt.train.techniques.mixup import Mixup, mixed_loss, mixup_batch
from dlopt.train.techniques.nonfinite import NonFiniteGuard, finite_flag, first_nonfinite
from dlopt.train.techniques.pool_first import PoolFirst, pool_first, restore_pool_order
from dlopt.train.techniques.precision import Precision, autocast_context, resolve_precision

__all__ = [
    "Augmentation", "ChannelsLast", "Compile", "CutMix", "EMA", "GradAccumulation", "GradClip",
    "L1Penalty", "Mixup", "NonFiniteGuard", "PoolFirst", "Precision", "Unfreeze",
    "accumulation_steps", "autocast_context", "clip_gradients", "compile_model", "cutmix_batch",
    "cutmix_box", "ema_model", "finite_flag", "first_nonfinite", "freeze", "frozen_names",
    "l1_penalty", "mixed_loss", "mixup_batch", "pool_first", "resolve_precision",
    "restore_pool_order", "to_channels_last",
]
