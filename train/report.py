"""Training reports: loss curves and sample grids as PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def plot_history(history_json: str | Path, out_png: str | Path, smooth: int = 25) -> Path:
    """Plot every loss term of a ``history.json`` (list of dicts per step), moving-averaged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads(Path(history_json).read_text())
    keys = [k for k in history[0] if k != "step"] if history else []
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3 * max(len(keys), 1), 2.6))
    axes = np.atleast_1d(axes)
    steps = np.array([h["step"] for h in history])
    for ax, key in zip(axes, keys, strict=False):
        y = np.array([h[key] for h in history], dtype=float)
        w = min(smooth, len(y))
        ys = np.convolve(y, np.ones(w) / w, mode="valid") if w > 1 else y
        ax.plot(steps[len(steps) - len(ys) :], ys)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def save_grid(rows: list[np.ndarray], out_png: str | Path) -> Path:
    """Save rows of (N, H, W, 3) uint8 images as one PNG grid."""
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    Image.fromarray(grid).save(out_png)
    return Path(out_png)
