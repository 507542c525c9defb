"""Conversions between images (uint8, HWC, RGB) and model tensors (float32, CHW, [-1, 1])."""

from __future__ import annotations

import numpy as np


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    x = np.asarray(images, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def from_model_output(x: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) float in [-1, 1] -> (..., H, W, 3) uint8 (values clipped)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float32), -3, -1)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
