"""SGD with momentum and Adam, written out by hand.

An optimizer holds references to the model's parameter arrays (name -> array) and
updates them in place from a gradient dict with the same names. Its state
(momentum, Adam's moments, the step count) is keyed by parameter name, so it can
be saved in a checkpoint and restored.

When the parameters are views into one contiguous buffer (``model.flat``, as
:mod:`vae_numpy.model` lays them out) and the model's backend uses the numba
kernels (``model.params.backend``; the environment for a plain dict), Adam updates
the whole buffer in one fused pass (:func:`vae_numpy.kernels.adam_update`);
otherwise it loops over the parameters with plain array code. Both do the same
arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_module
from .errors import ConfigError


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}")
    return float(value)


class Optimizer:
    """Base class: keeps the parameters and a per-name state."""

    def __init__(self, params: dict, lr: float):
        self.params = params
        self.lr = _check_positive("learning rate", lr)
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def step(self, grads: dict) -> None:
        """Update every parameter from ``grads`` (same names), in place."""
        self.t += 1
        for name, p in self.params.items():
            self._update(name, p, grads[name])

    def _update(self, name, p, g):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping, for checkpoints (``t`` included)."""
        out = {"t": np.asarray(self.t, dtype=np.int64)}
        for name, slots in self.state.items():
            for slot, arr in slots.items():
                out[f"{slot}/{name}"] = np.asarray(arr.get() if hasattr(arr, "get") else arr)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.t = int(state["t"])
        for key, value in state.items():
            if key == "t":
                continue
            slot, name = key.split("/", 1)
            arr = self._slot(name, slot)
            arr[...] = array_module(arr).asarray(value)  # CuPy takes no NumPy array here

    def _slot(self, name: str, slot: str):
        slots = self.state.setdefault(name, {})
        if slot not in slots:
            p = self.params[name]
            slots[slot] = p * 0  # zeros of p's shape, dtype and device
        return slots[slot]


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum.

    ``v = momentum * v + g``; ``p -= lr * v``. ``momentum = 0`` is plain SGD.
    """

    def __init__(self, params: dict, lr: float = 0.01, momentum: float = 0.0):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1); got {momentum!r}")
        self.momentum = float(momentum)

    def _update(self, name, p, g):
        if self.momentum:
            v = self._slot(name, "velocity")
            v *= self.momentum
            v += g
            g = v
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), with PyTorch's defaults.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    def __init__(self, params: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 *, fused: bool | None = None):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ConfigError(f"Adam betas must be in [0, 1); got {betas!r}")
        self.b1, self.b2 = float(b1), float(b2)
        self.eps = _check_positive("Adam eps", eps)
        if fused is None:
            fused_wanted = _uses_numba(params)
        else:
            fused_wanted = bool(fused)
        self._flat = _common_buffer(params) if fused_wanted else None
        if fused and self._flat is None:
            raise ConfigError("fused Adam needs parameters that are views of one NumPy buffer")
        if self._flat is not None:
            # the moments as flat buffers too, with per-name views for the state dict
            self._m_flat = np.zeros_like(self._flat)
            self._v_flat = np.zeros_like(self._flat)
            for name, p in params.items():
                start = _offset(p, self._flat)
                n = p.size
                self.state[name] = {
                    "m": self._m_flat[start:start + n].reshape(p.shape),
                    "v": self._v_flat[start:start + n].reshape(p.shape),
                }

    def step(self, grads: dict) -> None:
        flat_grad = self._flat_grad(grads) if self._flat is not None else None
        if flat_grad is None or flat_grad.shape != self._flat.shape:
            return super().step(grads)
        from .kernels import adam_update

        self.t += 1
        adam_update(self._flat, flat_grad, self._m_flat, self._v_flat, self.lr, self.b1,
                    self.b2, self.eps, self.t)

    def _flat_grad(self, grads: dict):
        # Checking that the gradients are views of one buffer walks every array; the
        # training loop passes the same dict of the same arrays each step (model.grads),
        # so the answer is kept for as long as the arrays are the same objects.
        cached = getattr(self, "_grad_cache", None)
        if (cached is not None and cached[0] is grads and len(grads) == len(cached[1])
                and all(a is b for a, b in zip(grads.values(), cached[1]))):
            return cached[2]
        flat = _common_buffer(grads)
        self._grad_cache = (grads, tuple(grads.values()), flat)
        return flat

    def _update(self, name, p, g):
        m = self._slot(name, "m")
        v = self._slot(name, "v")
        m *= self.b1
        m += (1.0 - self.b1) * g
        v *= self.b2
        v += (1.0 - self.b2) * (g * g)
        step = self.lr / (1.0 - self.b1**self.t)
        denom_scale = 1.0 / math.sqrt(1.0 - self.b2**self.t)
        p -= step * m / (array_module(p).sqrt(v) * denom_scale + self.eps)


def _uses_numba(params) -> bool:
    """Whether ``params`` belong to a backend that uses the numba kernels.

    ``model.params`` carries its model's backend (:class:`vae_numpy.model.ParamDict`),
    so a ``numpy-ref`` model gets the plain loop and a ``numpy`` model the fused
    kernel whatever ``$VAE_NUMPY_BACKEND`` says; a plain dict falls back to the
    environment (:func:`vae_numpy.kernels.numba_enabled`).
    """
    backend = getattr(params, "backend", None)
    if backend is not None:
        return bool(getattr(backend, "use_numba", False))
    from .kernels import numba_enabled

    return numba_enabled()


def _common_buffer(arrays: dict):
    """The 1-D NumPy buffer that every array in ``arrays`` is a view of, in order, or None."""
    base = None
    expected = 0
    for a in arrays.values():
        # NumPy points a view's .base at the array that owns the memory
        if not isinstance(a, np.ndarray) or a.base is None or a.base.ndim != 1:
            return None
        if base is None:
            base = a.base
        if a.base is not base or _offset(a, base) != expected:
            return None
        expected += a.size
    if base is None or expected != base.size:
        return None
    return base


def _offset(a: np.ndarray, base: np.ndarray) -> int:
    return (a.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // a.itemsize
