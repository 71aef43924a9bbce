"""Pure forward/backward pairs: the layers of the book, one small function each.

Every ``*_forward`` returns its output and a ``cache`` of what its backward needs;
every ``*_backward`` takes ``d<output>`` (the gradient of the loss with respect to
the output) and the cache, and returns the gradients with respect to the inputs,
named ``d<input>``. Nothing here keeps state, draws random numbers or changes a
dtype: float32 in gives float32 out, float64 in gives float64 out.

Shapes: ``N`` examples, ``D`` inputs, ``H`` outputs of a layer, ``K`` latent units.
"""

from __future__ import annotations

from .backend import array_module


def linear_forward(x, W, b):
    """Affine layer ``out = x @ W + b``.

    Parameters
    ----------
    x : (N, D) array
    W : (D, H) array
    b : (H,) array

    Returns
    -------
    out : (N, H) array
    cache : tuple
        ``(x, W)``, for :func:`linear_backward`.
    """
    out = x @ W + b
    return out, (x, W)


def linear_backward(dout, cache, input_grad: bool = True):
    """Gradients of an affine layer.

    Parameters
    ----------
    dout : (N, H) array
        dLoss/dout.
    cache : tuple
        From :func:`linear_forward`.
    input_grad : bool
        False skips ``dx`` (returned as None): the first layer's input is the data,
        which needs no gradient, and ``dout @ W.T`` would be its costliest GEMM.

    Returns
    -------
    dx : (N, D) array or None
    dW : (D, H) array
        ``x.T @ dout``: each example's outer product, summed over the batch.
    db : (H,) array
        ``dout`` summed over the batch (b is added to every row).
    """
    x, W = cache
    dx = dout @ W.T if input_grad else None
    dW = x.T @ dout
    db = dout.sum(axis=0)
    return dx, dW, db


def relu_forward(a):
    """``h = max(a, 0)``; the cache is ``h`` itself (``h > 0`` is the mask)."""
    h = array_module(a).maximum(a, 0)
    return h, h


def relu_backward(dh, cache):
    """``da = dh`` where the unit was active, 0 elsewhere."""
    h = cache
    return dh * (h > 0)


def tanh_forward(a):
    """``h = tanh(a)``; the cache is ``h`` itself (its derivative is ``1 - h^2``)."""
    h = array_module(a).tanh(a)
    return h, h


def tanh_backward(dh, cache):
    """``da = dh * (1 - h^2)``."""
    h = cache
    return dh * (1.0 - h * h)


#: The hidden layers' nonlinearities by name: ``(forward, backward)``.
ACTIVATIONS = {"relu": (relu_forward, relu_backward), "tanh": (tanh_forward, tanh_backward)}


def sigmoid_forward(a):
    """``p = 1 / (1 + exp(-a))``, computed as ``(1 + tanh(a/2)) / 2`` so it never overflows."""
    xp = array_module(a)
    p = 0.5 * (1.0 + xp.tanh(0.5 * a))
    return p, p


def sigmoid_backward(dp, cache):
    """``da = dp * p * (1 - p)``."""
    p = cache
    return dp * p * (1.0 - p)


def reparameterize_forward(mu, log_var, eps):
    """The reparameterization trick ``z = mu + std * eps`` with ``std = exp(log_var / 2)``.

    Parameters
    ----------
    mu, log_var : (N, K) arrays
        Mean and log-variance of q(z|x). ``log_var`` is the log of the *variance*
        sigma^2, so the standard deviation is ``exp(0.5 * log_var)``.
    eps : (N, K) array
        Standard normal noise, drawn by the caller so a step is deterministic.

    Returns
    -------
    z : (N, K) array
    cache : tuple
        ``(std, eps)``.
    """
    std = array_module(log_var).exp(0.5 * log_var)
    z = mu + std * eps
    return z, (std, eps)


def reparameterize_backward(dz, cache):
    """Gradients of ``z = mu + exp(log_var / 2) * eps``.

    ``dz/dmu = 1`` and ``dz/dlog_var = eps * std / 2``, so
    ``dmu = dz`` and ``dlog_var = dz * eps * std / 2``.
    """
    std, eps = cache
    dmu = dz
    dlog_var = dz * eps * (0.5 * std)
    return dmu, dlog_var


def one_hot(y, num_classes: int, dtype):
    """Labels ``y`` (N,) of integers in ``[0, num_classes)`` as rows of a (N, C) identity."""
    xp = array_module(y)
    return (y[:, None] == xp.arange(num_classes)[None, :]).astype(dtype)


def concat_forward(a, c):
    """The columns of ``a`` (N, A) then those of ``c`` (N, C): the (N, A + C) input of a layer.

    A conditional model reads its label this way: the encoder sees ``[x, c]`` and the
    decoder ``[z, c]``, with ``c`` the one-hot label. The cache is the split point A.
    """
    return array_module(a).concatenate([a, c], axis=1), a.shape[1]


def concat_backward(dout, cache):
    """Gradients of :func:`concat_forward`: the columns of ``dout`` shared back, ``(da, dc)``.

    Each output column is a copy of one input column, so its gradient goes to that
    column alone: ``da = dout[:, :A]`` and ``dc = dout[:, A:]``.
    """
    split = cache
    return dout[:, :split], dout[:, split:]
