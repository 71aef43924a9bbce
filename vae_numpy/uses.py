"""What a trained VAE is used for: scoring anomalies, denoising, compressing.

Small tools for chapter 15 that a user of the library can reuse on any model:

* :func:`roc_auc`, the area under the ROC curve of an anomaly score, computed as a
  rank statistic (the probability that an anomaly scores higher than a normal
  input, ties counted half);
* the corruptions the chapter scores: :func:`rotate`, :func:`add_noise` (Gaussian,
  clipped to [0, 1]) and :func:`black_out` (a square of the image set to one value);
* :func:`psnr`, the peak signal-to-noise ratio of a reconstruction, in dB, and
  :func:`median_filter`, the plain denoiser the VAE is measured against;
* :func:`one_stroke_images`, inputs simpler than a digit: one straight stroke each;
* :func:`zlib_bits`, the code length of each image under a general-purpose lossless
  compressor (deflate, the compression inside PNG), in bits.

Images are rows of an (N, D) array of pixels in [0, 1], as everywhere in the library,
with ``image_shape`` (28, 28) for MNIST.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .errors import InputError

__all__ = ["roc_auc", "psnr", "rotate", "add_noise", "black_out", "median_filter",
           "one_stroke_images", "zlib_bits"]


def _scores(values, name: str) -> np.ndarray:
    """``values`` as a non-empty, finite, 1-D float64 array, or a clear InputError."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a 1-D array of numbers; got "
                         f"{type(values).__name__}") from None
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array of scores; got shape "
                         f"{a.shape}")
    if not np.all(np.isfinite(a)):
        bad = a[~np.isfinite(a)][0]
        raise InputError(f"{name} holds a non-finite score ({bad}); an AUC needs every "
                         f"score to be a number. Check the score for overflow.")
    return a


def roc_auc(scores_in, scores_out) -> float:
    """Area under the ROC curve of an anomaly score: higher means more anomalous.

    The AUC is the probability that a randomly chosen anomaly scores higher than a
    randomly chosen normal input, with a tie counted as half,

    ``AUC = mean over pairs (i, j) of [s_out_j > s_in_i] + 0.5 [s_out_j == s_in_i]``,

    computed from ranks (Mann-Whitney U; tied scores share their mean rank) in
    O(n log n) rather than over all pairs. 1 separates perfectly, 0.5 is chance, and
    below 0.5 the score ranks the anomalies as *more* normal than the normal inputs.

    Parameters
    ----------
    scores_in : (n_in,) array
        Scores of the normal (in-distribution) inputs.
    scores_out : (n_out,) array
        Scores of the anomalies.

    Returns
    -------
    float in [0, 1]
    """
    s_in = _scores(scores_in, "scores_in")
    s_out = _scores(scores_out, "scores_out")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([s_in, s_out]))   # ties get their mean rank
    n_in, n_out = s_in.size, s_out.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def _images(x, name: str = "x") -> np.ndarray:
    """``x`` as an (N, D) float array with every pixel in [0, 1]."""
    a = np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{name} must be an (N, D) float array of pixels; got shape "
                         f"{a.shape}, dtype {a.dtype}")
    if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
        raise InputError(f"{name} must hold pixels in [0, 1]; got min {np.nanmin(a):.3g}, "
                         f"max {np.nanmax(a):.3g}. Scale pixels by 1/255.")
    return a


def _square(x, image_shape) -> tuple[int, int]:
    h, w = (int(s) for s in image_shape)
    if h * w != x.shape[1]:
        raise InputError(f"image_shape {tuple(image_shape)} holds {h * w} pixels; the "
                         f"images have {x.shape[1]}")
    return h, w


def psnr(x, x_hat, *, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio of each reconstruction, in dB.

    ``PSNR = 10 log10(data_range**2 / MSE)`` with the mean squared error over the
    pixels of one image. Each extra 10 dB is a tenfold smaller squared error. An
    exact reconstruction has an MSE of 0 and a PSNR of ``inf``.

    Parameters
    ----------
    x : (N, D) array
        The clean images, pixels in [0, 1].
    x_hat : (N, D) array
        Their reconstructions (denoised images), the same shape.
    data_range : float
        The largest possible pixel value minus the smallest: 1 for pixels in [0, 1].

    Returns
    -------
    (N,) float64 array
    """
    x = _images(x, "x")
    x_hat = np.asarray(x_hat)
    if x_hat.shape != x.shape:
        raise InputError(f"x_hat must have the shape of x, {x.shape}; got {x_hat.shape}")
    if not data_range > 0:
        raise InputError(f"data_range must be > 0; got {data_range!r}")
    mse = ((x.astype(np.float64) - x_hat.astype(np.float64)) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range ** 2 / mse)


def rotate(x, degrees: float, *, image_shape=(28, 28)) -> np.ndarray:
    """Each image turned by ``degrees`` anticlockwise about its centre.

    Bilinear interpolation (``scipy.ndimage.rotate``, order 1), the image size kept,
    the corners that come in from outside filled with 0, the result clipped to [0, 1].

    Returns
    -------
    (N, D) array, the dtype of ``x``
    """
    from scipy import ndimage

    x = _images(x)
    h, w = _square(x, image_shape)
    turned = ndimage.rotate(x.reshape(-1, h, w), float(degrees), axes=(2, 1),
                            reshape=False, order=1, mode="constant", cval=0.0)
    return np.clip(turned, 0, 1).reshape(x.shape).astype(x.dtype)


def add_noise(x, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus Gaussian noise of standard deviation ``sigma``, clipped to [0, 1].

    The clipping keeps the result a valid image; it also means the noise that is
    added to a blank (0) or full (1) pixel is only ever half a Gaussian.

    Parameters
    ----------
    x : (N, D) array
    sigma : float >= 0
    rng : numpy.random.Generator
        The noise comes from here, drawn in the dtype of ``x``.

    Returns
    -------
    (N, D) array, the dtype of ``x``
    """
    x = _images(x)
    if not (isinstance(sigma, (int, float, np.floating, np.integer)) and
            math.isfinite(sigma) and sigma >= 0):
        raise InputError(f"sigma must be a number >= 0; got {sigma!r}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator (np.random.default_rng"
                         f"(seed)); got {type(rng).__name__}")
    noise = rng.standard_normal(x.shape, dtype=x.dtype)
    return np.clip(x + x.dtype.type(sigma) * noise, 0, 1).astype(x.dtype)


def black_out(x, *, top: int, left: int, size: int, value: float = 0.0,
              image_shape=(28, 28)) -> np.ndarray:
    """A copy of ``x`` with a ``size`` by ``size`` square of every image set to ``value``.

    ``value = 0`` (black, in MNIST's own convention; white on this book's pages) erases
    the ink there; ``value = 1`` paints it.

    Returns
    -------
    (N, D) array, the dtype of ``x``
    """
    x = _images(x)
    h, w = _square(x, image_shape)
    top, left, size = int(top), int(left), int(size)
    if size < 1 or top < 0 or left < 0 or top + size > h or left + size > w:
        raise InputError(f"the square (top {top}, left {left}, size {size}) must lie "
                         f"inside the {h} x {w} image")
    if not 0 <= value <= 1:
        raise InputError(f"value must be a pixel value in [0, 1]; got {value!r}")
    out = x.reshape(-1, h, w).copy()
    out[:, top:top + size, left:left + size] = value
    return out.reshape(x.shape)


def median_filter(x, size: int = 3, *, image_shape=(28, 28)) -> np.ndarray:
    """Each image replaced by the median of every ``size`` by ``size`` neighbourhood.

    The classic denoiser for salt-and-pepper and Gaussian noise: it knows nothing about
    digits, only that neighbouring pixels tend to agree. Edges are handled by
    reflection (``scipy.ndimage.median_filter``, mode "reflect").

    Returns
    -------
    (N, D) array, the dtype of ``x``
    """
    from scipy import ndimage

    x = _images(x)
    h, w = _square(x, image_shape)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"size must be a positive integer; got {size!r}")
    out = ndimage.median_filter(x.reshape(-1, h, w), size=(1, int(size), int(size)),
                                mode="reflect")
    return out.reshape(x.shape).astype(x.dtype)


def one_stroke_images(n: int, rng: np.random.Generator, *, length=(8.0, 16.0),
                      width: float = 1.0, image_shape=(28, 28)) -> np.ndarray:
    """``n`` images of one straight stroke each, drawn with soft edges.

    Each stroke has a centre uniform in the middle of the image (4 pixels or more from
    every edge), an angle uniform in [0, pi) and a length uniform in ``length``;
    a pixel's ink is ``clip(1.5 - d / width, 0, 1)`` at distance ``d`` from the
    segment, so the stroke is fully inked within ``width / 2`` of it and fades to 0 at
    ``1.5 width``: about as thick as an MNIST pen stroke for ``width = 1``.

    Returns
    -------
    (n, H*W) float32 array, pixels in [0, 1]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a positive integer; got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator (np.random.default_rng"
                         f"(seed)); got {type(rng).__name__}")
    lo, hi = (float(v) for v in length)
    if not 0 < lo <= hi:
        raise InputError(f"length must be (shortest, longest) with 0 < shortest <= "
                         f"longest; got {length!r}")
    if not width > 0:
        raise InputError(f"width must be > 0; got {width!r}")
    h, w = (int(s) for s in image_shape)
    if min(h, w) < 9:
        raise InputError(f"image_shape must be at least 9 x 9; got {tuple(image_shape)}")
    pixels = np.stack(np.mgrid[0:h, 0:w], axis=-1).reshape(-1, 2).astype(np.float64)
    out = np.empty((n, h * w), dtype=np.float32)
    for i in range(n):
        centre = rng.uniform((4, 4), (h - 5, w - 5))
        angle = rng.uniform(0, np.pi)
        half = 0.5 * rng.uniform(lo, hi) * np.array([np.sin(angle), np.cos(angle)])
        a, b = centre - half, centre + half
        # distance of each pixel to the segment a-b: project, clip to the segment
        t = np.clip((pixels - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
        d = np.linalg.norm(pixels - (a + t[:, None] * (b - a)), axis=1)
        out[i] = np.clip(1.5 - d / width, 0, 1)
    return out


def zlib_bits(x, *, binary: bool = False, level: int = 9) -> np.ndarray:
    """Code length of each image under zlib (deflate, as inside PNG), in bits.

    A general-purpose lossless compressor's length is an upper bound on what a
    perfect code for *any* distribution could achieve, and it grows with an image's
    complexity: a blank image compresses to almost nothing, noise hardly at all. It
    includes zlib's fixed overhead (a 2-byte header and a 4-byte checksum), the same
    for every image.

    Parameters
    ----------
    x : (N, D) array
        Pixels in [0, 1].
    binary : bool
        False: each pixel is stored as a grey level 0-255 (``round(255 x)``), one byte.
        True: the pixels must be exactly 0 or 1 and are packed 8 to a byte first, so
        the raw image is D bits.
    level : int
        zlib's compression level, 0-9.

    Returns
    -------
    (N,) int64 array of bits (whole bytes, times 8)
    """
    x = _images(x)
    if binary:
        if not np.isin(x, (0, 1)).all():
            raise InputError("binary=True needs pixels that are exactly 0 or 1; binarize "
                             "first (vae_numpy.data.binarize_split) or pass binary=False")
        rows = np.packbits(x.astype(np.uint8), axis=1)
    else:
        rows = np.rint(x.astype(np.float64) * 255).astype(np.uint8)
    return np.array([8 * len(zlib.compress(row.tobytes(), level)) for row in rows],
                    dtype=np.int64)
