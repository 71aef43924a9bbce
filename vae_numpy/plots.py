"""Figures the chapters and the command line share: image grids, loss curves,
latent scatter plots and the decoded 2-D manifold.

Every function draws on a matplotlib ``Axes`` (a new figure when none is given)
and returns it, so a chapter can compose figures; :func:`save_figure` writes a
PNG atomically.
"""

from __future__ import annotations

import math

import numpy as np

from .io import atomic_write


def _plt():
    import matplotlib.pyplot as plt

    return plt


def tile_images(images, image_shape=(28, 28), ncols: int = 8, pad: int = 1,
                fill: float = 1.0) -> np.ndarray:
    """Arrange ``images`` ((n, H*W) or (n, H, W)) into one 2-D array, row by row."""
    images = np.asarray(images, dtype=np.float32).reshape(-1, *image_shape)
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    h, w = image_shape
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), fill, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        out[top:top + h, left:left + w] = img
    return out


def image_grid(images, *, image_shape=(28, 28), ncols: int = 8, ax=None, title: str | None = None,
               cmap: str = "gray_r"):
    """Show images as a grid without ticks; ink is dark on white by default."""
    if ax is None:
        _, ax = _plt().subplots(figsize=(ncols * 0.6, math.ceil(len(images) / ncols) * 0.6 + 0.3))
    ax.imshow(tile_images(images, image_shape, ncols, fill=0.0), cmap=cmap, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_history(history, *, axes=None):
    """Loss curves: the total (negative ELBO) and its two terms, per epoch, train and test."""
    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.2), constrained_layout=True)
    epochs = history["epoch"]
    for ax, key, label in zip(axes, ("loss", "rec", "kl"),
                              ("loss (-ELBO)", "reconstruction -log p(x|z)", "KL(q(z|x) || p(z))")):
        ax.plot(epochs, history[f"train_{key}"], "o-", color="0.2", label="train")
        test = np.asarray(history[f"test_{key}"], dtype=float)
        if np.isfinite(test).any():
            ax.plot(epochs, test, "s--", color="0.55", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.set_title(label)
        ax.legend()
    return axes


def latent_scatter(z, labels=None, *, ax=None, s: float = 2.0, title: str | None = None):
    """2-D codes as points, coloured by label (digit) when given."""
    plt = _plt()
    z = np.asarray(z)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, color="0.3")
    else:
        sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="viridis", s=s, vmin=-0.5, vmax=9.5)
        plt.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return ax


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
