"""numba-fused kernels for the work around the GEMMs, each beside its reference.

Every kernel here has a pure-array twin (``*_reference``) that does the same
arithmetic with plain NumPy; the tests assert the two agree. The GEMMs stay in
BLAS: these kernels fuse the cheap elementwise passes that would otherwise each
read and write a whole array.

numba is used when it imports and the backend is not ``numpy-ref``
(``VAE_NUMPY_BACKEND``); otherwise the references run.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:
    import numba

    _HAVE_NUMBA = True
except ImportError:  # numba is a dependency, but keep the reference path usable without it
    numba = None
    _HAVE_NUMBA = False


def numba_enabled() -> bool:
    """Whether the numba kernels are used by default in this process."""
    return _HAVE_NUMBA and os.environ.get("VAE_NUMPY_BACKEND", "numpy") == "numpy"


def _njit(fn):
    return numba.njit(cache=True, fastmath=False, nogil=True)(fn) if _HAVE_NUMBA else fn


# -- Adam ---------------------------------------------------------------------
def adam_update_reference(p, g, m, v, lr, b1, b2, eps, t):
    """Adam's update of ``p`` in place (and of the moments ``m``, ``v``), plain NumPy."""
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * (g * g)
    step = lr / (1.0 - b1**t)
    denom_scale = 1.0 / math.sqrt(1.0 - b2**t)
    p -= step * m / (np.sqrt(v) * denom_scale + eps)


@_njit
def _adam_update_numba(p, g, m, v, lr, b1, b2, eps, t):
    step = lr / (1.0 - b1**t)
    denom_scale = 1.0 / math.sqrt(1.0 - b2**t)
    # float32 constants keep the loop in single precision, as the reference is
    one_b1 = np.float32(1.0 - b1)
    one_b2 = np.float32(1.0 - b2)
    f_b1 = np.float32(b1)
    f_b2 = np.float32(b2)
    f_step = np.float32(step)
    f_scale = np.float32(denom_scale)
    f_eps = np.float32(eps)
    tiny = np.float32(1e-30)
    for i in range(p.size):
        gi = g[i]
        mi = f_b1 * m[i] + one_b1 * gi
        vi = f_b2 * v[i] + one_b2 * (gi * gi)
        # A pixel that is always 0 gets gradient 0, and its moments decay geometrically
        # into subnormal floats, which x86 computes on ~100x slower (training slowed
        # 10x). Flushing them to 0 changes the update by less than 1e-22.
        if abs(mi) < tiny:
            mi = np.float32(0.0)
        if vi < tiny:
            vi = np.float32(0.0)
        m[i] = mi
        v[i] = vi
        p[i] -= f_step * mi / (np.sqrt(vi) * f_scale + f_eps)


def adam_update(p, g, m, v, lr, b1, b2, eps, t):
    """Adam's update over flat float32 buffers in one pass (numba), else the reference."""
    if _HAVE_NUMBA and p.dtype == np.float32 and p.ndim == 1:
        _adam_update_numba(p, g, m, v, float(lr), float(b1), float(b2), float(eps), int(t))
    else:
        adam_update_reference(p, g, m, v, lr, b1, b2, eps, t)
