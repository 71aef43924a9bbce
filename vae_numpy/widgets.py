"""ipywidgets builders the chapters share.

Each builder returns a widget for the chapter to display. A slider needs a running
kernel to redraw, so every builder draws with a plain plotting function from
:mod:`.plots` that the chapter also calls once, as a normal figure, for the static
HTML. ``ipywidgets`` is imported inside the builders: the rest of the library does
not need it.
"""

from __future__ import annotations


def kl_explorer(mu: float = 1.0, sigma: float = 0.5):
    """Sliders for the mean and spread of q = N(mu, sigma^2) against the prior N(0, 1).

    The figure (:func:`vae_numpy.plots.plot_kl_densities`) shows both densities and
    KL(q || p) split into its mean term and its spread term.

    Returns
    -------
    ipywidgets.VBox
        The two sliders above the figure.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .plots import plot_kl_densities

    mu_slider = widgets.FloatSlider(value=mu, min=-3.0, max=3.0, step=0.05,
                                    description="μ", continuous_update=False)
    sigma_slider = widgets.FloatSlider(value=sigma, min=0.05, max=3.0, step=0.05,
                                       description="σ", continuous_update=False)

    def draw(mu, sigma):
        fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
        plot_kl_densities(mu, sigma, ax=ax)
        plt.show()

    out = widgets.interactive_output(draw, {"mu": mu_slider, "sigma": sigma_slider})
    return widgets.VBox([widgets.HBox([mu_slider, sigma_slider]), out])


def handwriting_explorer(slant: float = 0.0, stroke_width: float = 2.0, neatness: float = 0.6,
                         seed: int = 0, factors=None):
    """Sliders for the three factors of a synthetic letter; the letter redraws as they move.

    The figure (:func:`vae_numpy.plots.plot_handwriting_style`) shows the letter and
    its point in the (slant, stroke width) plane. The "hand" slider picks the seed of
    the stroke's jitter: another student with the same recipe.

    Parameters
    ----------
    slant, stroke_width, neatness : float
        Starting values, inside :data:`vae_numpy.handwriting.HANDWRITING_RANGES`.
    seed : int
        Starting seed of the jitter, 0 to 9.
    factors : dict of str to ndarray (n,), optional
        Factors of a set, drawn as grey points in the plane for context.

    Returns
    -------
    ipywidgets.VBox
        The sliders above the figure.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .handwriting import HANDWRITING_RANGES
    from .plots import plot_handwriting_style

    style = {"description_width": "initial"}
    sliders = {
        "slant": widgets.FloatSlider(value=slant, min=HANDWRITING_RANGES["slant"][0],
                                     max=HANDWRITING_RANGES["slant"][1], step=0.05,
                                     description="slant", continuous_update=False, style=style),
        "stroke_width": widgets.FloatSlider(
            value=stroke_width, min=HANDWRITING_RANGES["stroke_width"][0],
            max=HANDWRITING_RANGES["stroke_width"][1], step=0.1, description="stroke width",
            continuous_update=False, style=style),
        "neatness": widgets.FloatSlider(value=neatness, min=0.0, max=1.0, step=0.05,
                                        description="neatness", continuous_update=False,
                                        style=style),
        "seed": widgets.IntSlider(value=seed, min=0, max=9, description="hand",
                                  continuous_update=False, style=style),
    }

    def draw(slant, stroke_width, neatness, seed):
        plot_handwriting_style(slant, stroke_width, neatness, seed=seed, factors=factors)
        plt.show()

    out = widgets.interactive_output(draw, sliders)
    controls = widgets.VBox([widgets.HBox([sliders["slant"], sliders["stroke_width"]]),
                             widgets.HBox([sliders["neatness"], sliders["seed"]])])
    return widgets.VBox([controls, out])


def latent_explorer(model, *, codes=None, labels=None, z1: float = 0.0, z2: float = 0.0,
                    lim: float = 3.0):
    """Two sliders for a 2-D code ``(z1, z2)``; the decoded digit redraws as they move.

    The figure (:func:`vae_numpy.plots.plot_latent_explorer`) shows the decoder's mean
    image at the code, beside a map that marks the code among ``codes`` (for example
    the encoder's means of some test digits, coloured by ``labels``).

    Parameters
    ----------
    model : VAE or Autoencoder with ``latent_dim == 2``
    codes : (n, 2) array, optional
    labels : (n,) int array, optional
    z1, z2 : float
        Starting code.
    lim : float
        The sliders run over ``[-lim, lim]``.

    Returns
    -------
    ipywidgets.VBox
        The sliders above the figure.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .plots import plot_latent_explorer

    if model.config.latent_dim != 2:
        raise ValueError(f"latent_explorer needs a 2-D latent space; got latent_dim "
                         f"{model.config.latent_dim}")
    sliders = {
        name: widgets.FloatSlider(value=value, min=-lim, max=lim, step=0.05,
                                  description=name, continuous_update=False)
        for name, value in (("z1", z1), ("z2", z2))
    }

    def draw(z1, z2):
        plot_latent_explorer(model, z1, z2, codes=codes, labels=labels, lim=lim + 0.5)
        plt.show()

    out = widgets.interactive_output(draw, sliders)
    return widgets.VBox([widgets.HBox(list(sliders.values())), out])
