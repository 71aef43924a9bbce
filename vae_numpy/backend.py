"""The array module behind the model: NumPy (with or without numba) or CuPy.

The model code is written once against an array module ``xp``. A :class:`Backend`
names which one, and whether the numba-fused kernels of :mod:`vae_numpy.kernels`
are used on the CPU.

=============  ============================================================
``numpy``      NumPy arrays, numba kernels for everything around the GEMMs
``numpy-ref``  NumPy arrays, plain array code only: the reference path
``cupy``       CuPy arrays on a GPU (optional; needs ``cupy`` and a device)
=============  ============================================================

The backend is chosen by the ``backend`` argument where a function takes one,
else by the environment variable ``VAE_NUMPY_BACKEND``, else ``numpy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .errors import ConfigError

BACKENDS = ("numpy", "numpy-ref", "cupy")


@dataclass(frozen=True)
class Backend:
    """An array module plus the switch for the numba kernels."""

    name: str
    xp: ModuleType
    use_numba: bool

    def asarray(self, a, dtype=None):
        """Move ``a`` onto this backend (a no-op for NumPy arrays on NumPy)."""
        return self.xp.asarray(a, dtype=dtype)

    def asnumpy(self, a) -> np.ndarray:
        """Return ``a`` as a NumPy array (copies from the GPU for CuPy)."""
        return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def cupy_available() -> tuple[bool, str]:
    """Whether CuPy imports and sees a GPU, and if not, why not."""
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed (pip install cupy-cuda12x)"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        return False, f"CuPy found no usable GPU ({err})"
    if n < 1:
        return False, "CuPy found no GPU"
    return True, ""


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return the backend called ``name`` (see the module docstring)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = os.environ.get("VAE_NUMPY_BACKEND", "numpy")
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "cupy":
        ok, why = cupy_available()
        if not ok:
            raise ConfigError(f"backend 'cupy' is not usable here: {why}. Use backend='numpy'.")
        import cupy

        return Backend("cupy", cupy, use_numba=False)
    return Backend(name, np, use_numba=(name == "numpy"))


def array_module(*arrays) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np
