"""Central finite differences, to check every hand-written gradient.

Run checks in float64: with a step ``h = 1e-5`` the central difference has an
error of order ``h**2`` from the Taylor series and ``1e-16 / h`` from rounding,
both far below the ``1e-6`` relative error the tests ask for. In float32 the
rounding term alone is ``1e-7 / h``, so a float32 check proves little.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import InputError


def rel_error(a, b) -> float:
    """Relative error ``||a - b|| / (||a|| + ||b||)`` (0 when both are 0).

    Taken over the whole array rather than element by element, so entries that
    are 0 up to rounding in both (a ReLU that is off) do not dominate.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = np.linalg.norm(a - b)
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0.0 else float(num / den)


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to ``x``.

    ``x`` is changed in place one entry at a time and restored, so ``f`` reads it
    through a closure: ``numerical_gradient(lambda: loss(W), W)``.

    Parameters
    ----------
    f : callable returning a float
    x : float array (float64 recommended), modified and restored in place
        The array ``f`` reads, or a view of it (a transpose or a strided slice
        works: each entry is perturbed where it lives). A read-only or integer
        array, or anything that is not an ndarray, raises :class:`InputError`.
    h : float
        Step size.

    Returns
    -------
    grad : array of the shape of ``x``
    """
    _check_perturbable(x)
    grad = np.zeros(x.shape, dtype=np.float64)
    # Index x itself, never x.reshape(-1): for a non-contiguous x (a transpose, a
    # strided slice) reshape returns a copy, and perturbing a copy that f cannot see
    # would give a gradient of zeros without a word.
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        f_plus = float(f())
        x[idx] = old - h
        f_minus = float(f())
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * h)
    return grad


def _check_perturbable(x) -> None:
    """Raise :class:`InputError` unless ``x`` is an array ``f`` can see changed in place."""
    if not isinstance(x, np.ndarray):
        raise InputError(
            f"numerical_gradient needs the NumPy array that f reads, changed in place; got "
            f"{type(x).__name__}. Pass the parameter array itself (np.asarray of a list "
            "would be a copy that f never sees).")
    if not x.flags.writeable:
        raise InputError(
            "numerical_gradient changes x in place, but x is read-only; pass the writable "
            "array that f reads (a copy would not reach f).")
    if x.dtype.kind != "f":
        raise InputError(
            f"numerical_gradient needs a floating-point x; got dtype {x.dtype}, which would "
            "round every step of h away. Build the parameter as float64 (astype makes a "
            "copy that f would not see).")


def numerical_gradient_array(
    f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x``, for array-valued ``f``.

    This checks a backward function: its output given ``dout`` must equal this.
    """
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)
