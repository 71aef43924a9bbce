"""Log-likelihoods and the KL term, each beside its gradient.

All losses are *per example*: they sum over pixels (or latent units) and return an
``(N,)`` array in nats, so the model can average over the batch and weigh the
terms. Every ``*_backward`` takes the gradient of the loss with respect to that
``(N,)`` array (``dnll``, ``dkl``) and returns the gradients of the inputs.
"""

from __future__ import annotations

import math

from .backend import array_module

LOG_2PI = math.log(2.0 * math.pi)


def softplus(a):
    """``log(1 + exp(a))`` without overflow: ``max(a, 0) + log1p(exp(-|a|))``."""
    xp = array_module(a)
    return xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))


def bernoulli_nll(x_logits, x):
    """Negative log-likelihood of ``x`` under Bernoulli(sigmoid(x_logits)), per example.

    ``-log p(x|z) = sum_d softplus(l_d) - x_d * l_d``: the binary cross-entropy,
    computed from the logits so it never takes the log of 0 and needs no clipping.
    ``x`` may hold any value in [0, 1] (grey levels as soft targets).

    Parameters
    ----------
    x_logits : (N, D) array
    x : (N, D) array, values in [0, 1]

    Returns
    -------
    nll : (N,) array, nats
    """
    return (softplus(x_logits) - x * x_logits).sum(axis=1)


def bernoulli_nll_backward(dnll, x_logits, x):
    """``dx_logits = dnll * (sigmoid(x_logits) - x)``, shape (N, D)."""
    xp = array_module(x_logits)
    p = 0.5 * (1.0 + xp.tanh(0.5 * x_logits))
    return dnll[:, None] * (p - x)


def gaussian_nll(x_mean, x, log_var_x):
    """Negative log-likelihood of ``x`` under N(x_mean, exp(log_var_x)), per example.

    ``0.5 * sum_d [log(2 pi) + log_var_x + (x_d - x_mean_d)^2 / exp(log_var_x)]``.
    With a fixed variance this is the squared error, scaled, plus a constant.

    Parameters
    ----------
    x_mean, x : (N, D) arrays
    log_var_x : scalar or (D,) array
        Log-variance of each pixel's Gaussian (shared over examples).

    Returns
    -------
    nll : (N,) array, nats
    """
    xp = array_module(x_mean)
    var_term = xp.broadcast_to(log_var_x, x_mean.shape)
    return 0.5 * (LOG_2PI + var_term + (x - x_mean) ** 2 * xp.exp(-var_term)).sum(axis=1)


def gaussian_nll_backward(dnll, x_mean, x, log_var_x):
    """Gradients of :func:`gaussian_nll`.

    Returns
    -------
    dx_mean : (N, D) array
        ``dnll * (x_mean - x) / var``.
    dlog_var_x : array of the shape of ``log_var_x``
        ``0.5 * dnll * (1 - (x - x_mean)^2 / var)``, summed over what was broadcast.
    """
    xp = array_module(x_mean)
    inv_var = xp.exp(-xp.asarray(log_var_x, dtype=x_mean.dtype))
    diff = x_mean - x
    dx_mean = dnll[:, None] * diff * inv_var
    dlv = 0.5 * dnll[:, None] * (1.0 - diff**2 * inv_var)
    dlog_var_x = dlv.sum(axis=0) if xp.ndim(log_var_x) == 1 else dlv.sum()
    return dx_mean, dlog_var_x


def kl_divergence(mu, log_var):
    """KL(N(mu, diag exp(log_var)) || N(0, I)) in closed form, per example.

    ``0.5 * sum_k (mu_k^2 + exp(log_var_k) - 1 - log_var_k)``.

    Parameters
    ----------
    mu, log_var : (N, K) arrays

    Returns
    -------
    kl : (N,) array, nats
    """
    return kl_per_dim(mu, log_var).sum(axis=1)


def kl_per_dim(mu, log_var):
    """The KL of each latent unit separately, shape (N, K); sums to :func:`kl_divergence`.

    ``exp(log_var) - 1`` is computed as ``expm1(log_var)``: near ``log_var = 0`` (a unit
    that has collapsed to the prior) the plain form cancels to a few correct digits in
    float32. Nothing is clamped: in float32 the KL is finite for ``log_var`` up to
    about 88 (``exp`` overflows at 88.7); beyond that training has diverged, and the
    training loop's NaN guard says so.
    """
    xp = array_module(mu)
    return 0.5 * (mu * mu + (xp.expm1(log_var) - log_var))


def kl_divergence_backward(dkl, mu, log_var):
    """``dmu = dkl * mu`` and ``dlog_var = dkl * (exp(log_var) - 1) / 2``, each (N, K)."""
    xp = array_module(mu)
    dmu = dkl[:, None] * mu
    dlog_var = dkl[:, None] * (0.5 * xp.expm1(log_var))
    return dmu, dlog_var


def gaussian_log_density(z, mu, log_var):
    """``log N(z; mu, diag exp(log_var))`` summed over the last axis.

    Used by the importance-weighted bound; ``mu = 0, log_var = 0`` gives the prior.
    """
    xp = array_module(z)
    return -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 * xp.exp(-log_var)).sum(axis=-1)
