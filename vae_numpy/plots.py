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


def plot_history(history, *, axes=None, objective: str | None = None):
    """Loss curves: the total and its two terms, per epoch, train and test.

    The test curve is the negative ELBO (with the model's beta). The train curve of the
    total is what training minimised: name it with ``objective`` (for example
    ``objective.describe(model)``) when that is not the negative ELBO. By default it is
    labelled the negative ELBO, or "KL-weighted objective" when the history's beta was
    not 1 in every epoch (a warm-up).
    """
    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.2), constrained_layout=True)
    epochs = history["epoch"]
    betas = np.asarray(history["beta"], dtype=float)
    if objective is None and np.isfinite(betas).any() and np.any(betas[np.isfinite(betas)] != 1):
        objective = "KL-weighted objective"
    total = "loss (-ELBO)" if objective is None else "loss (test: -ELBO)"
    for ax, key, label in zip(axes, ("loss", "rec", "kl"),
                              (total, "reconstruction -log p(x|z)", "KL(q(z|x) || p(z))")):
        train_label = f"train: {objective}" if key == "loss" and objective else "train"
        ax.plot(epochs, history[f"train_{key}"], "o-", color="0.2", label=train_label)
        test = np.asarray(history[f"test_{key}"], dtype=float)
        if np.isfinite(test).any():
            ax.plot(epochs, test, "s--", color="0.55", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        ax.set_title(label)
        ax.legend()
    return axes


def scatter_by_digit(ax, z, labels, *, s: float = 2.0, legend: bool = True, **legend_kw):
    """2-D points coloured by digit with the categorical ``tab10`` map, and a legend.

    Digits are categories, not a scale, so each gets its own colour (never a sequential
    map such as viridis). Points are drawn in a shuffled order (seeded), so that no
    digit is hidden under the ones drawn after it.
    """
    plt = _plt()
    z, labels = np.asarray(z), np.asarray(labels).astype(int)
    colors = plt.get_cmap("tab10")(labels % 10)
    order = np.random.default_rng(0).permutation(len(z))
    ax.scatter(z[order, 0], z[order, 1], s=s, c=colors[order], rasterized=True)
    if legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="none", markersize=5,
                          color=plt.get_cmap("tab10")(d % 10), label=str(d))
                   for d in np.unique(labels)]
        kw = {"title": "digit", "fontsize": 8, "title_fontsize": 8, "loc": "center left",
              "bbox_to_anchor": (1.01, 0.5), "frameon": False, "handletextpad": 0.1}
        kw.update(legend_kw)
        ax.legend(handles=handles, **kw)
    return ax


def latent_scatter(z, labels=None, *, ax=None, s: float = 2.0, title: str | None = None,
                   legend: bool = True):
    """2-D codes as points, coloured by digit (``tab10``, with a legend) when given."""
    plt = _plt()
    z = np.asarray(z)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.5))
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, color="0.3")
    else:
        scatter_by_digit(ax, z, labels, s=s, legend=legend)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return ax


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically."""
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def plot_kl_densities(mu: float, sigma: float, *, ax=None, z_range=(-5.0, 5.0)):
    """One latent unit's q = N(mu, sigma^2) against the prior p = N(0, 1), with their KL.

    The title gives ``KL(q || p)`` in nats and its two parts: the mean term
    ``mu^2 / 2`` and the spread term ``(sigma^2 - 1 - log sigma^2) / 2``.
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    z = np.linspace(*z_range, 801)
    q = np.exp(-0.5 * ((z - mu) / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))
    p = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    mean_term = 0.5 * mu**2
    spread_term = 0.5 * (sigma**2 - 1.0 - math.log(sigma**2))
    ax.plot(z, p, "--", color="0.45", lw=2, label="prior $p(z) = \\mathcal{N}(0, 1)$")
    ax.plot(z, q, "-", color="0.05", lw=2,
            label=f"$q(z) = \\mathcal{{N}}({mu:.2f}, {sigma:.2f}^2)$")
    ax.fill_between(z, q, color="0.05", alpha=0.12)
    ax.set_xlim(*z_range)
    ax.set_ylim(0.0, max(1.05 * q.max(), 0.45))
    ax.set_xlabel("$z$")
    ax.set_ylabel("density")
    ax.set_title(f"KL(q || p) = {mean_term + spread_term:.3f} nats "
                 f"(mean {mean_term:.3f} + spread {spread_term:.3f})", fontsize=10)
    ax.legend(loc="upper left", fontsize=9)
    return ax


def computation_graph(nodes, edges, *, ax=None, edge_labels=None, highlight=()):
    """Draw a small computation graph: boxes for values, arrows for "is used by".

    Parameters
    ----------
    nodes : dict
        ``name -> (x, y, text)``: where each value sits and what its box says
        (e.g. its forward value and its gradient on two lines).
    edges : list of (str, str)
        ``(src, dst)``: ``src`` is an input of the step that computes ``dst``.
    ax : matplotlib Axes, optional
    edge_labels : dict, optional
        ``(src, dst) -> text`` written beside the arrow (e.g. the gradient that
        flows back along it).
    highlight : iterable of str
        Nodes drawn with a darker box (e.g. a value used twice).

    Returns
    -------
    ax : matplotlib Axes
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2))
    edge_labels = edge_labels or {}
    highlight = set(highlight)
    boxes = {}
    for name, (x, y, text) in nodes.items():
        face = "0.82" if name in highlight else "white"
        boxes[name] = ax.text(x, y, text, ha="center", va="center", fontsize=10,
                              bbox=dict(boxstyle="round,pad=0.4", facecolor=face,
                                        edgecolor="0.15"))
    for src, dst in edges:
        (x0, y0, _), (x1, y1, _) = nodes[src], nodes[dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="0.25", lw=1.2,
                                    patchA=boxes[src].get_bbox_patch(),
                                    patchB=boxes[dst].get_bbox_patch(),
                                    shrinkA=2, shrinkB=2))
        if (src, dst) in edge_labels:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, edge_labels[(src, dst)], ha="center",
                    va="center", fontsize=9, color="0.1",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))
    xs = [x for x, _, _ in nodes.values()]
    ys = [y for _, y, _ in nodes.values()]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.axis("off")
    return ax


def plot_handwriting_style(slant: float, stroke_width: float, neatness: float, *, seed: int = 0,
                           factors=None, axes=None):
    """One synthetic letter drawn from its factors, beside its place in the factor plane.

    Parameters
    ----------
    slant, stroke_width, neatness : float
        The letter's factors (see :func:`vae_numpy.handwriting.render_glyph`).
    seed : int
        Seeds the jitter of the stroke, so the same seed keeps the same wobble
        while ``neatness`` scales it.
    factors : dict of str to ndarray (n,), optional
        Factors of a whole set (from :func:`vae_numpy.handwriting.make_handwriting`), drawn
        as grey points in the (slant, stroke width) plane for context.
    axes : pair of matplotlib Axes, optional

    Returns
    -------
    axes : pair of matplotlib Axes
        The letter, and the (slant, stroke width) plane with the letter marked.
    """
    from .handwriting import HANDWRITING_RANGES, render_glyph

    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.5, 3.3), constrained_layout=True,
                               gridspec_kw={"width_ratios": [1, 1.3]})
    ax_img, ax_plane = axes
    image = render_glyph(float(slant), float(stroke_width), float(neatness),
                         rng=np.random.default_rng(seed))
    ax_img.imshow(image, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title(f"slant {slant:+.2f} rad, width {stroke_width:.1f} px,\n"
                     f"neatness {neatness:.2f}", fontsize=10)
    if factors is not None:
        ax_plane.scatter(factors["slant"], factors["stroke_width"], s=12, color="0.7",
                         label="the class")
    ax_plane.plot([slant], [stroke_width], marker="*", markersize=16, color="0.05",
                  linestyle="none", label="this letter")
    ax_plane.set_xlim(*HANDWRITING_RANGES["slant"])
    ax_plane.set_ylim(*HANDWRITING_RANGES["stroke_width"])
    ax_plane.set_xlabel("slant (radians, + leans right)")
    ax_plane.set_ylabel("stroke width (pixels)")
    ax_plane.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return axes


def prior_grid(n: int) -> np.ndarray:
    """``n`` values that split N(0, 1) into ``n`` slices of equal probability.

    ``z_i = Phi^{-1}((i + 1/2) / n)`` for ``i = 0 .. n-1``: the middle (in probability)
    of each slice, so a grid of these values in every dimension covers the prior's
    mass evenly. Returns shape (n,), float64, increasing.
    """
    from scipy.stats import norm

    if int(n) < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    return norm.ppf((np.arange(int(n)) + 0.5) / int(n))


def plot_manifold(model, *, n: int = 20, ax=None, tick_every: int = 4):
    """Decode an ``n`` x ``n`` grid of 2-D codes spaced by :func:`prior_grid`, as one image.

    The column index follows ``z_1`` (left to right, increasing) and the row index
    ``z_2`` (bottom to top, increasing), so the picture reads like a scatter plot of
    the codes. Ticks name the ``z`` value of every ``tick_every``-th row and column.

    Parameters
    ----------
    model : VAE or Autoencoder with ``latent_dim == 2``
    n : int
        Images per side.
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes
    """
    plt = _plt()
    if model.config.latent_dim != 2:
        raise ValueError(f"plot_manifold needs a 2-D latent space; got latent_dim "
                         f"{model.config.latent_dim}")
    values = prior_grid(n)
    z1, z2 = np.meshgrid(values, values[::-1])          # top row: the largest z_2
    codes = np.stack([z1.ravel(), z2.ravel()], axis=1).astype(model.dtype)
    images = model.backend.asnumpy(model.mean_image(model.decode(model.backend.asarray(codes))))
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7))
    side = 28
    ax.imshow(tile_images(images, (side, side), ncols=n, pad=0), cmap="gray_r", vmin=0.0,
              vmax=1.0, interpolation="nearest")
    centres = np.arange(n) * side + side / 2 - 0.5
    half = np.arange(0, (n + 1) // 2, tick_every)
    idx = np.unique(np.r_[half, n - 1 - half])        # symmetric: both ends named
    ax.set_xticks(centres[idx], [f"{v:.2f}" for v in values[idx]])
    ax.set_yticks(centres[idx], [f"{v:.2f}" for v in values[::-1][idx]])
    ax.tick_params(labelsize=8)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return ax


def plot_latent_explorer(model, z1: float, z2: float, *, codes=None, labels=None, axes=None,
                         lim: float = 3.5):
    """The image a 2-D decoder draws at ``(z1, z2)``, beside a map of where that code lies.

    Parameters
    ----------
    model : VAE or Autoencoder with ``latent_dim == 2``
    z1, z2 : float
        The code to decode.
    codes : (n, 2) array, optional
        Codes of real digits (e.g. the encoder's means), drawn as the map's background.
    labels : (n,) int array, optional
        Their digits, to colour the background.
    axes : pair of matplotlib Axes, optional
    lim : float
        The map shows ``[-lim, lim]`` in both dimensions.

    Returns
    -------
    axes : pair of matplotlib Axes
    """
    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.5, 3.4), constrained_layout=True,
                               gridspec_kw={"width_ratios": [1, 1.25]})
    ax_img, ax_map = axes
    z = model.backend.asarray(np.array([[z1, z2]], dtype=model.dtype))
    image = model.backend.asnumpy(model.mean_image(model.decode(z)))[0]
    ax_img.imshow(image.reshape(28, 28), cmap="gray_r", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title(f"decoded $z = ({z1:+.2f}, {z2:+.2f})$", fontsize=10)
    if codes is not None:
        codes = np.asarray(codes)
        if labels is None:
            ax_map.scatter(codes[:, 0], codes[:, 1], s=2, color="0.6")
        else:
            scatter_by_digit(ax_map, codes, labels, s=2)
    ax_map.plot([z1], [z2], marker="x", markersize=14, mew=3, color="0.0", linestyle="none")
    ax_map.set_xlim(-lim, lim)
    ax_map.set_ylim(-lim, lim)
    ax_map.set_aspect("equal")
    ax_map.set_xlabel("$z_1$")
    ax_map.set_ylabel("$z_2$")
    return axes
