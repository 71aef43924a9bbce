"""What the static pages compute with no kernel: exported decoders, explorers, answer boxes.

The static HTML runs a small JavaScript file of the book's own, ``book/web/vae-book.js``
(no framework, no CDN). A chapter cell calls the functions here to write what that file
needs and to place it in the page:

* :func:`export_asset` writes an asset, a ``.js`` file that registers plain data
  (numbers as base64 float32) under a name. A ``<script>`` tag loads it, so a page
  opened from ``file://`` works as well as one served over HTTP (``fetch`` of a local
  file is refused there). :func:`decoder_asset` is the data of a decoder: its layers,
  the activation and how the output becomes an image.
* :func:`explorer` and :func:`answer_box` return the HTML of an element the script
  fills in. The element's ``data-`` attributes hold its settings as JSON.

In a notebook the same HTML shows only a line that says where the explorer runs; the
chapter's ipywidgets are the notebook's explorers.

Assets go to ``web/assets/`` below the working directory (chapters run in ``book/``);
Sphinx copies ``book/web`` into the built site's ``_static/`` (``_config.yml``), and
the script finds the assets next to itself.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

ASSET_DIR = Path("web") / "assets"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"an asset name is lower-case letters, digits and '-'; got {name!r}")
    return name


def encode_array(a, *, grey: bool = False) -> dict:
    """``{"shape": [...], "f32": base64}``: the array as little-endian float32.

    With ``grey=True``, values in [0, 1] are stored as bytes, ``round(255 * a)``
    (``"u8"``): a quarter of the size, for images the page paints with 256 grey levels
    anyway.
    """
    if grey:
        arr = np.asarray(a, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError("grey=True stores values in [0, 1]; got "
                             f"{arr.min():.3g} to {arr.max():.3g}")
        raw = np.ascontiguousarray(np.round(255 * arr).astype(np.uint8))
        return {"shape": list(raw.shape), "u8": base64.b64encode(raw.tobytes()).decode("ascii")}
    arr = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
    return {"shape": list(arr.shape), "f32": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_array(d: dict) -> np.ndarray:
    """The inverse of :func:`encode_array` (the script does the same in the page)."""
    if "u8" in d:
        raw = np.frombuffer(base64.b64decode(d["u8"]), dtype=np.uint8)
        return (raw.astype(np.float32) / np.float32(255)).reshape(d["shape"])
    raw = base64.b64decode(d["f32"])
    return np.frombuffer(raw, dtype="<f4").reshape(d["shape"])


def decoder_asset(model) -> dict:
    """The decoder of ``model`` as data: ``layers`` (W, b, activation) and ``output``.

    The page computes ``h = act(h @ W + b)`` layer by layer and then the image from
    the last layer's output: ``sigmoid`` of the logits for a Bernoulli decoder, the
    means themselves for a Gaussian one. Only ReLU and tanh hidden layers are
    written, as the library has no others.

    A continuous Bernoulli decoder is refused: the page knows the two outputs above,
    and its mean image (:func:`vae_numpy.losses.continuous_bernoulli_mean`) is
    neither.
    """
    config = model.config
    if config.likelihood not in ("bernoulli", "gaussian"):
        from .errors import ConfigError

        raise ConfigError(f"the page's decoder draws Bernoulli or Gaussian means; a "
                          f"{config.likelihood} decoder's mean image is not one of them, so "
                          "it cannot be exported (decode it in the notebook instead)")
    p = {k: model.backend.asnumpy(v) for k, v in model.params.items()}
    n_hidden = sum(1 for k in p if re.fullmatch(r"dec\.W\d+", k))
    layers = [{"W": encode_array(p[f"dec.W{i}"]), "b": encode_array(p[f"dec.b{i}"]),
               "act": config.activation} for i in range(1, n_hidden + 1)]
    layers.append({"W": encode_array(p["dec.W_out"]), "b": encode_array(p["dec.b_out"]),
                   "act": "linear"})
    side = int(round(config.input_dim ** 0.5))
    return {"kind": "decoder", "latent_dim": config.latent_dim, "layers": layers,
            "output": "sigmoid" if config.likelihood == "bernoulli" else "identity",
            "image_shape": [side, side] if side * side == config.input_dim
            else [1, config.input_dim]}


def decoded_images(model, z) -> np.ndarray:
    """What the page draws for the codes ``z``: the decoder's mean image, float64 (N, D)."""
    z = model.backend.asarray(np.asarray(z, dtype=model.dtype))
    return np.asarray(model.backend.asnumpy(model.mean_image(model.decode(z))),
                      dtype=np.float64)


def decode_asset(asset: dict, z) -> np.ndarray:
    """The image the page computes for codes ``z`` from a :func:`decoder_asset`, in NumPy.

    The same arithmetic as ``vae-book.js`` (float32 weights, float64 sums), so the
    browser tests can hold a page's pixels against it without the model at hand.
    """
    h = np.atleast_2d(np.asarray(z, dtype=np.float64))
    for layer in asset["layers"]:
        h = h @ decode_array(layer["W"]).astype(np.float64) + decode_array(layer["b"])
        if layer["act"] == "relu":
            h = np.maximum(h, 0.0)
        elif layer["act"] == "tanh":
            h = np.tanh(h)
    return 1.0 / (1.0 + np.exp(-h)) if asset["output"] == "sigmoid" else h


def export_asset(name: str, data: dict, folder=None) -> Path:
    """Write ``data`` as the asset ``name`` (``<folder>/<name>.js``); return its path.

    The file is written to a temporary name and renamed, so a page never loads half an
    asset and an interrupted build leaves the old one in place.
    """
    _check_name(name)
    folder = Path(ASSET_DIR if folder is None else folder)
    folder.mkdir(parents=True, exist_ok=True)
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = ("// Written by vae_numpy.web.export_asset; loaded by vae-book.js.\n"
            f"(window.VAE_BOOK_ASSETS = window.VAE_BOOK_ASSETS || {{}})[{json.dumps(name)}] = "
            f"{body};\n")
    path = folder / f"{name}.js"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)           # mkstemp's 0600 would hide it from a web server
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_asset(path) -> dict:
    """The data of an asset file written by :func:`export_asset`."""
    text = Path(path).read_text()
    return json.loads(text[text.index("] = ") + 4:].rstrip().rstrip(";"))


class _Html(str):
    """A string of HTML that Jupyter and myst-nb display as HTML (``_repr_html_``)."""

    def _repr_html_(self) -> str:
        return str(self)


NOTEBOOK_NOTE = ("This explorer computes in the rendered book's page, with no kernel. "
                 "In the notebook, use the widget of the next cell.")


def explorer(kind: str, *, note: str = NOTEBOOK_NOTE, **settings) -> _Html:
    """The HTML of an explorer of ``kind`` that ``vae-book.js`` builds in the page.

    ``settings`` become the element's ``data-settings`` (JSON): the assets it loads
    (``asset=`` or ``assets=``) and its own options. ``note`` is what shows where the
    script does not run (a notebook).
    """
    if not _NAME.match(kind):
        raise ValueError(f"an explorer kind is lower-case letters, digits and '-'; got {kind!r}")
    data = html.escape(json.dumps(settings, allow_nan=False), quote=True)
    return _Html(f'<div class="vae-explorer" data-kind="{kind}" data-settings="{data}">'
                 f'<p class="vae-explorer-note">{html.escape(note)}</p></div>')


def answer_box(check, *, label: str, variable: str) -> _Html:
    """An answer box for the numerical exercise that ``check`` (a NumberCheck) judges.

    The page judges a typed number with the same rules and messages as the Python
    checker. ``variable`` names the answer variable of the notebook.
    """
    data = html.escape(json.dumps(check.to_dict(), allow_nan=False), quote=True)
    note = (f"In the rendered book this box checks your number. In the notebook, set "
            f"{variable} and run the checker below.")
    return _Html(f'<div class="vae-answer" data-label="{html.escape(label, quote=True)}" '
                 f'data-check="{data}"><p class="vae-explorer-note">{html.escape(note)}'
                 f'</p></div>')


# -- the explorers the chapters place -----------------------------------------------------
def latent_plane(model, name: str, codes, labels, *, lim: float = 3.5, start=(0.0, 0.0),
                 folder=None, note: str = NOTEBOOK_NOTE) -> _Html:
    """A 2-D model's latent plane: the codes as dots coloured by digit (tab10); the
    pointer's point decoded beside it. Exports the decoder as asset ``name``."""
    if model.config.latent_dim != 2:
        raise ValueError(f"latent_plane needs a 2-D latent space; got latent_dim "
                         f"{model.config.latent_dim}")
    export_asset(name, decoder_asset(model), folder)
    return explorer("latent-plane", note=note, asset=name, lim=float(lim),
                    start=[float(v) for v in start], codes=encode_array(codes),
                    labels=[int(v) for v in labels])


def principal_axes(codes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre, directions (n, K), spreads (n,))``: the codes' mean and principal axes,
    each axis with the standard deviation of the codes along it."""
    codes = np.asarray(codes, dtype=np.float64)
    centre = codes.mean(axis=0)
    _, s, vt = np.linalg.svd(codes - centre, full_matrices=False)
    return centre, vt[:n], s[:n] / np.sqrt(len(codes) - 1)


def latent_sliders(model, name: str, codes, *, n: int = 3, span: float = 3.0,
                   folder=None, note: str = NOTEBOOK_NOTE) -> _Html:
    """Sliders along the ``n`` principal axes of ``codes``, in units of the codes'
    spread along each, from ``-span`` to ``span``:
    ``z = centre + sum_i a_i * spread_i * axis_i``."""
    centre, axes, spreads = principal_axes(codes, n)
    export_asset(name, decoder_asset(model), folder)
    return explorer("latent-sliders", note=note, asset=name, centre=encode_array(centre),
                    directions=encode_array(axes), scales=[float(v) for v in spreads],
                    names=[f"PC{i + 1}" for i in range(n)], range=float(span))


def interpolation(model, name: str, codes, names, *, start=(0, 1), folder=None,
                  note: str = NOTEBOOK_NOTE) -> _Html:
    """Two menus of digits (their ``codes``) and a slider t: decodes (1 - t) z_a + t z_b."""
    codes = np.asarray(codes)
    if len(names) != len(codes):
        raise ValueError(f"{len(names)} names for {len(codes)} codes")
    export_asset(name, decoder_asset(model), folder)
    return explorer("interpolation", note=note, asset=name, codes=encode_array(codes),
                    names=list(names), start=[int(v) for v in start])


def frames(name: str, render, grid: dict, *, start: dict | None = None,
           folder=None, note: str = NOTEBOOK_NOTE) -> _Html:
    """Precomputed images on a grid of factors: ``render(**{factor: value})`` for every
    combination of ``grid`` (factor -> values, in order); sliders step through them.

    The images are stored with 256 grey levels (:func:`encode_array` ``grey=True``), so
    they must lie in [0, 1].
    """
    names = list(grid)
    values = [list(map(float, grid[k])) for k in names]
    images = [np.asarray(render(**dict(zip(names, combo))), dtype=np.float64)
              for combo in itertools.product(*values)]   # the last factor varies fastest
    shape = list(images[0].shape) if images[0].ndim == 2 else [1, images[0].size]
    start = start or {}
    index = [int(np.argmin(np.abs(np.asarray(v) - start.get(k, v[0]))))
             for k, v in zip(names, values)]
    export_asset(name, {"kind": "frames", "frames": encode_array(np.stack(images), grey=True),
                        "grid": values, "names": names, "start": index,
                        "image_shape": shape}, folder)
    return explorer("frames", note=note, asset=name)

