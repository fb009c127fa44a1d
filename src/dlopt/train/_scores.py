"""How a classifier's outputs read as class probabilities, on numpy arrays: the rule that
scores ONNX Runtime outputs (evaluation of an .onnx, compression, the benchmark, the server).
Training scores its torch tensors with ``dlopt.train.metrics.scores_from_outputs`` (float32,
on the device); a test holds the two to the same probabilities.

numpy only: the benchmark worker imports it to score ONNX Runtime outputs, and importing torch
there would add ~290 MB to the ``peak_mb`` it reports.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_probabilities"]


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """``(N, C)`` float64 probabilities from logits: softmax, or for one logit (the ``bce``
    binary head) the sigmoid as class 1 and its complement as class 0, so top-1 is class 1
    exactly when the sigmoid is above 0.5."""
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim < 2 or out.shape[1] == 1:
        with np.errstate(over="ignore"):
            p1 = 1.0 / (1.0 + np.exp(-out.reshape(len(out))))
        return np.stack([1.0 - p1, p1], axis=1)
    with np.errstate(invalid="ignore", over="ignore"):  # Inf logits: NaN rows, callers check
        shifted = out - out.max(axis=1, keepdims=True)
        proba = np.exp(shifted)
        proba /= proba.sum(axis=1, keepdims=True)
    return proba
