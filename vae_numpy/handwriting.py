"""The synthetic "handwriting" set: one cursive letter "l" written by many hands.

:func:`make_handwriting` draws a set of images whose causes are known: each image's
slant, stroke width and neatness (:data:`HANDWRITING_FACTORS`, drawn from
:data:`HANDWRITING_RANGES`) are returned beside the images, so a model's latent axes
can be compared with the truth. :func:`render_glyph` draws one letter for given
factors: a sample from p(x | z) with the true z.

Randomness always comes from a ``numpy.random.Generator`` passed in by the caller.
"""

from __future__ import annotations

import math

import numpy as np

from .data import Dataset, _check_int, _check_rng
from .errors import InputError

__all__ = ["HANDWRITING_FACTORS", "HANDWRITING_RANGES", "make_handwriting", "render_glyph"]

#: The factors that cause each synthetic image, in the order of ``make_handwriting``.
HANDWRITING_FACTORS = ("slant", "stroke_width", "neatness")

#: The uniform ranges ``make_handwriting`` draws each factor from.
#: slant in radians (positive leans right), stroke_width in pixels of a 28-pixel image,
#: neatness from 0 (shaky, sloppy) to 1 (smooth, the template exactly).
HANDWRITING_RANGES: dict[str, tuple[float, float]] = {
    "slant": (-0.5, 0.5),
    "stroke_width": (1.0, 3.0),
    "neatness": (0.0, 1.0),
}

# Control points of the letter in pixels of a 28-pixel image, x to the right and y up,
# origin at the image centre: an entry stroke from the baseline, the loop, the
# downstroke and an exit stroke to the right.
_GLYPH_CONTROL = np.array(
    [
        (-6.4, -7.5), (-4.1, -5.7), (-0.9, -1.1), (1.8, 4.0), (2.8, 7.2), (1.7, 8.8),
        (0.0, 8.1), (-1.1, 4.4), (-1.7, -0.2), (-1.5, -5.2), (-0.5, -8.1), (1.8, -8.8),
        (4.1, -7.8), (6.4, -5.7),
    ]
)  # fmt: skip
_POINT_SPACING = 0.6  # pixels between samples along the stroke, <= the blur below
_SIGMA = 0.6  # pixels: temperature of the soft minimum that gives the distance field
_LOG_FLOOR = -38.0  # exp(-38) ~ 3e-17: keeps every product well above float32 denormals
_RENDER_CHUNK = 256  # images per block: the intermediates then stay in cache
_SLOW_AMPLITUDE = 0.5  # pixels, for the slowest wave; decays as 1/sqrt(frequency)
_FAST_AMPLITUDE = 0.12  # pixels, per fast wave


def _catmull_rom(points: np.ndarray, per_segment: int = 40) -> np.ndarray:
    """A smooth curve through ``points`` (M, 2), sampled densely: (per_segment*(M-1)+1, 2)."""
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    pieces = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        pieces.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    pieces.append(p[-2][None])
    return np.vstack(pieces)


def _glyph_template() -> tuple[np.ndarray, np.ndarray]:
    """The letter as K points equally spaced along its length, and a jitter basis.

    Returns
    -------
    points : ndarray of float32, shape (K, 2)
    basis : ndarray of float32, shape (K, J)
        Smooth displacement patterns along the stroke with their amplitudes (pixels)
        built in: a few slow waves (a sloppy overall shape) and many fast ones (tremor).
    """
    fine = _catmull_rom(_GLYPH_CONTROL)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(fine, axis=0).T))])
    k = int(np.ceil(arc[-1] / _POINT_SPACING)) + 1
    s = np.linspace(0.0, arc[-1], k)
    points = np.stack([np.interp(s, arc, fine[:, 0]), np.interp(s, arc, fine[:, 1])], axis=1)
    u = (s / arc[-1])[:, None]
    slow = np.arange(1, 5)
    fast = np.arange(12, 21)
    basis = np.concatenate(
        [
            np.cos(np.pi * slow * u) * (_SLOW_AMPLITUDE / np.sqrt(slow)),
            np.sin(np.pi * slow * u) * (_SLOW_AMPLITUDE / np.sqrt(slow)),
            np.cos(np.pi * fast * u) * _FAST_AMPLITUDE,
            np.sin(np.pi * fast * u) * _FAST_AMPLITUDE,
        ],
        axis=1,
    )
    return points.astype(np.float32), basis.astype(np.float32)


_GLYPH_POINTS, _JITTER_BASIS = _glyph_template()


def _render(slant, stroke_width, neatness, coef, size: int) -> np.ndarray:
    """Render M letters.

    Parameters
    ----------
    slant, stroke_width, neatness : ndarray of float32, shape (M,)
    coef : ndarray of float32, shape (M, J, 2)
        Standard normal jitter coefficients, scaled here by ``1 - neatness``.
    size : int

    Returns
    -------
    ndarray of float32, shape (M, size, size), values in [0, 1]
    """
    f32 = np.float32
    scale = f32(size / 28)
    sigma = f32(_SIGMA) * scale
    # The letter: template + jitter (in 28-pixel units), then the slant as a shear.
    pts = _GLYPH_POINTS + (f32(1) - neatness)[:, None, None] * (_JITTER_BASIS @ coef)
    x = pts[..., 0] + np.tan(slant)[:, None] * pts[..., 1]
    centre = f32((size - 1) / 2)
    col = centre + x * scale
    row = centre - pts[..., 1] * scale
    # Each point stands for the stroke length around it (half of each neighbouring gap).
    gap = np.hypot(np.diff(col, axis=1), np.diff(row, axis=1))
    length = np.zeros_like(col)
    length[:, 1:] += gap / 2
    length[:, :-1] += gap / 2
    # Distance field via a soft minimum over the points: near a stroke,
    #   D(p) = sum_k length_k exp(-|p - q_k|^2 / (2 s^2)) ~ sqrt(2 pi) s exp(-d^2 / (2 s^2))
    # with d the distance from p to the stroke and s = sigma. The Gaussian factors into a
    # row part and a column part, so D for all pixels is one (size, K) @ (K, size) product
    # per image. Inverting the approximation gives d, and the ink follows from d.
    grid = np.arange(size, dtype=f32)
    k = f32(-0.5) / (sigma * sigma)
    gx = (col[..., None] - grid) ** 2 * k
    np.maximum(gx, f32(_LOG_FLOOR), out=gx)
    np.exp(gx, out=gx)
    gx *= length[..., None]
    gy = (row[..., None] - grid) ** 2 * k
    np.maximum(gy, f32(_LOG_FLOOR), out=gy)
    np.exp(gy, out=gy)
    field = np.matmul(gy.transpose(0, 2, 1), gx)  # (M, size, size)
    d2 = np.log(field / (f32(math.sqrt(2 * math.pi)) * sigma))
    d2 *= f32(-2) * sigma * sigma
    dist = np.sqrt(np.maximum(d2, f32(0)))
    # Ink: full inside the stroke's half width, falling to 0 over one pixel (anti-aliasing).
    half = (stroke_width * scale / f32(2))[:, None, None]
    ink = half - dist
    ink += f32(0.5)
    return np.clip(ink, f32(0), f32(1), out=ink)


def _check_size(size) -> int:
    return _check_int(size, "size", 8)


def render_glyph(
    slant: float,
    stroke_width: float,
    neatness: float,
    *,
    rng: np.random.Generator | None = None,
    size: int = 28,
) -> np.ndarray:
    """Draw one cursive "l" with the given slant, stroke width and neatness.

    Parameters
    ----------
    slant : float
        Shear in radians, ``|slant| < pi/2``; positive leans the letter to the right
        (its top moves right). :data:`HANDWRITING_RANGES` keeps it inside the frame.
    stroke_width : float
        Width of the pen in pixels of a 28-pixel image (scaled with ``size``), in (0, 6].
    neatness : float
        In [0, 1]: 1 draws the smooth template, 0 the shakiest, sloppiest version.
    rng : numpy.random.Generator, optional
        Draws the jitter; required when ``neatness < 1``. When given, it is always drawn
        from (the same amount whatever ``neatness`` is).
    size : int
        Height and width of the image in pixels, at least 8.

    Returns
    -------
    ndarray of float32, shape (size, size)
        Ink in [0, 1] (0 = paper, 1 = ink), like MNIST pixels divided by 255.
    """
    values = {"slant": slant, "stroke_width": stroke_width, "neatness": neatness}
    for key, value in values.items():
        if isinstance(value, bool) or not np.isscalar(value) or not np.isfinite(value):
            raise InputError(f"{key} must be a finite number; got {value!r}.")
    if not abs(slant) < math.pi / 2:
        raise InputError(f"slant must lie in (-pi/2, pi/2) radians; got {slant}.")
    if not 0 < stroke_width <= 6:
        raise InputError(f"stroke_width must lie in (0, 6] pixels; got {stroke_width}.")
    if not 0 <= neatness <= 1:
        raise InputError(f"neatness must lie in [0, 1]; got {neatness}.")
    size = _check_size(size)
    shape = (1, _JITTER_BASIS.shape[1], 2)
    if rng is not None:
        coef = _check_rng(rng, "render_glyph").standard_normal(shape, dtype=np.float32)
    elif neatness < 1:
        raise InputError(
            f"render_glyph needs rng for neatness < 1 (got {neatness}): the jitter is "
            "random. Pass rng=np.random.default_rng(seed)."
        )
    else:
        coef = np.zeros(shape, dtype=np.float32)
    image = _render(
        np.array([slant], dtype=np.float32),
        np.array([stroke_width], dtype=np.float32),
        np.array([neatness], dtype=np.float32),
        coef,
        size,
    )
    return image[0]


def make_handwriting(
    n: int, rng: np.random.Generator, *, size: int = 28
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """A synthetic set of one cursive letter "l" in many hands, with its true factors.

    Each image's factors are drawn independently and uniformly from
    :data:`HANDWRITING_RANGES`:

    - ``slant`` ~ U(-0.5, 0.5) radians (about +-29 degrees; positive leans right),
    - ``stroke_width`` ~ U(1.0, 3.0) pixels (of a 28-pixel image),
    - ``neatness`` ~ U(0, 1) (1 smooth, 0 shaky and sloppy; the jitter itself is random).

    Parameters
    ----------
    n : int
        Number of images, at least 1.
    rng : numpy.random.Generator
        The only source of randomness: the same seed gives the same set.
    size : int
        Image height and width in pixels (the letter scales with it), at least 8.

    Returns
    -------
    dataset : Dataset
        ``x`` of shape (n, size*size) float32 in [0, 1], ``y`` None, ``name``
        ``"handwriting"``, ``image_shape`` (size, size).
    factors : dict of str to ndarray of float32, shape (n,)
        The true factors, keyed by the names in :data:`HANDWRITING_FACTORS`.
    """
    n = _check_int(n, "n", 1)
    rng = _check_rng(rng, "make_handwriting")
    size = _check_size(size)
    factors = {}
    for name in HANDWRITING_FACTORS:
        lo, hi = HANDWRITING_RANGES[name]
        u = rng.random(n, dtype=np.float32)
        factors[name] = np.float32(lo) + np.float32(hi - lo) * u
    coef = rng.standard_normal((n, _JITTER_BASIS.shape[1], 2), dtype=np.float32)
    x = np.empty((n, size * size), dtype=np.float32)
    for start in range(0, n, _RENDER_CHUNK):
        block = slice(start, start + _RENDER_CHUNK)
        images = _render(
            factors["slant"][block],
            factors["stroke_width"][block],
            factors["neatness"][block],
            coef[block],
            size,
        )
        x[block] = images.reshape(len(images), -1)
    return Dataset(x, None, "handwriting", (size, size)), factors
