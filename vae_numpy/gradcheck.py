"""Central finite differences, to check every hand-written gradient.

Run checks in float64: with a step ``h = 1e-5`` the central difference has an
error of order ``h**2`` from the Taylor series and ``1e-16 / h`` from rounding,
both far below the ``1e-6`` relative error the tests ask for. In float32 the
rounding term alone is ``1e-7 / h``, so a float32 check proves little.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
    x : array (float64 recommended), modified and restored in place
    h : float
        Step size.

    Returns
    -------
    grad : array of the shape of ``x``
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: writing to it changes x
    g = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        f_plus = float(f())
        flat[i] = old - h
        f_minus = float(f())
        flat[i] = old
        g[i] = (f_plus - f_minus) / (2.0 * h)
    return grad


def numerical_gradient_array(
    f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x``, for array-valued ``f``.

    This checks a backward function: its output given ``dout`` must equal this.
    """
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)
