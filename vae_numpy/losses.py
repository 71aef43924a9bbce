"""Log-likelihoods and the KL term, each beside its gradient.

The decoder's likelihoods: the Bernoulli and the continuous Bernoulli (both from the
logits), the Gaussian; and the closed-form KL of q(z|x) to the prior.

All losses are *per example*: they sum over pixels (or latent units) and return an
``(N,)`` array in nats, so the model can average over the batch and weigh the
terms. Every ``*_backward`` takes the gradient of the loss with respect to that
``(N,)`` array (``dnll``, ``dkl``) and returns the gradients of the inputs.
"""

from __future__ import annotations

import math

import numpy as np

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


# -- the continuous Bernoulli -----------------------------------------------------------
# Loaiza-Ganem and Cunningham (2019), "The continuous Bernoulli: fixing a pervasive error
# in variational autoencoders". With lambda = sigmoid(l) the identities
# 1 - 2 lambda = -tanh(l / 2) and artanh(1 - 2 lambda) = -l / 2 turn every formula of
# the paper into a function of the logit l, which is what the decoder outputs:
#
#   C(lambda)   = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) = l / tanh(l / 2),
#   d log C/dl  = 1 / l - 1 / sinh(l),
#   E[x]        = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda))
#               = 1/2 + (coth(l / 2) - 2 / l) / 2.
#
# Each is 0/0 at l = 0 (lambda = 1/2) and cancels badly near it, so for |l| < 2 they are
# computed from the power series of sinh and cosh, whose terms are all positive (no
# cancellation; 12 terms reach float64 precision at |l| = 2). For |l| >= 2 they are
# written with exp(-|l|), which never overflows and keeps full precision as |l| grows
# (the paper's form in lambda does not: lambda rounds to 1 once l > 37 in float64).
_CB_SERIES_BELOW = 2.0
_CB_TERMS = 12
#: Taylor coefficients: (sinh t - t) / t^3, (cosh t - 1) / t^2 and (t cosh t - sinh t) / t^3
#: as polynomials in t^2.
_SINH_COEF = tuple(1.0 / math.factorial(2 * k + 3) for k in range(_CB_TERMS))
_COSH_COEF = tuple(1.0 / math.factorial(2 * k + 2) for k in range(_CB_TERMS))
_TCOSH_COEF = tuple((2 * k + 2) / math.factorial(2 * k + 3) for k in range(_CB_TERMS))
LOG_2 = math.log(2.0)


def _poly(y, coef):
    """``sum_k coef[k] * y**k`` by Horner's rule (in the dtype of ``y``)."""
    out = coef[-1] + 0.0 * y
    for c in coef[-2::-1]:
        out = out * y + c
    return out


def _cb_split(x_logits):
    """``(small, t, b)``: where the series applies, l there (0 elsewhere), |l| elsewhere.

    Each branch sees only arguments it is accurate for, so neither computes an
    overflow or a 0/0 in the entries that the other one answers.
    """
    xp = array_module(x_logits)
    a = xp.abs(x_logits)
    small = a < _CB_SERIES_BELOW
    return small, xp.where(small, x_logits, 0.0), xp.where(small, _CB_SERIES_BELOW, a)


def log_continuous_bernoulli_norm(x_logits):
    """``log C(lambda)``, the log normalizing constant of the continuous Bernoulli.

    ``C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda)`` with ``lambda =
    sigmoid(x_logits)``, which is ``l / tanh(l / 2)`` in the logit ``l``; its limit at
    ``lambda = 1/2`` is 2, so ``log C`` runs from ``log 2`` (at ``l = 0``) upwards,
    like ``log |l|`` for large ``|l|``. Computed

    * for ``|l| < 2`` as ``log 2 + log1p((cosh l - 1) / 2) - log1p(sinh(l) / l - 1)``
      (``C = (1 + cosh l) / (sinh(l) / l)``), both from their Taylor series;
    * for ``|l| >= 2`` as ``log|l| + log1p(e^-|l|) - log1p(-e^-|l|)``.

    Finite for every finite logit, ``l = 0`` included, in float32 and float64.

    Parameters
    ----------
    x_logits : array, any shape

    Returns
    -------
    log_c : array of the same shape and dtype
    """
    xp = array_module(x_logits)
    small, t, b = _cb_split(x_logits)
    t2 = t * t
    near = LOG_2 + (xp.log1p(0.5 * t2 * _poly(t2, _COSH_COEF))
                    - xp.log1p(t2 * _poly(t2, _SINH_COEF)))
    e = xp.exp(-b)
    far = xp.log(b) + (xp.log1p(e) - xp.log1p(-e))
    return xp.where(small, near, far)


def log_continuous_bernoulli_norm_backward(dlog_c, x_logits):
    """``dx_logits = dlog_c * (1 / l - 1 / sinh(l))``, the derivative of ``log C``.

    The two terms are each about ``1 / l`` near ``l = 0`` and their difference about
    ``l / 6``, so for ``|l| < 2`` it is computed as ``l P / (1 + l^2 P)`` with
    ``P = (sinh l - l) / l^3`` from its series; for ``|l| >= 2`` as
    ``sign(l) (1 / |l| - 1 / sinh|l|)`` with ``sinh`` from ``e^-|l|``. 0 at ``l = 0``,
    odd in ``l``.

    Parameters
    ----------
    dlog_c, x_logits : arrays of one shape

    Returns
    -------
    dx_logits : array of that shape
    """
    return dlog_c * _dlog_cb_norm(x_logits)


def _dlog_cb_norm(x_logits):
    """``d log C / dl`` itself (see :func:`log_continuous_bernoulli_norm_backward`)."""
    xp = array_module(x_logits)
    small, t, b = _cb_split(x_logits)
    t2 = t * t
    p = _poly(t2, _SINH_COEF)
    near = t * p / (1.0 + t2 * p)
    e = xp.exp(-b)
    # 1 / sinh(b) = 2 e^-b / (1 - e^-2b), and 1 - e^-2b = -expm1(-b) (1 + e^-b)
    far = xp.sign(x_logits) * (1.0 / b + 2.0 * e / (xp.expm1(-b) * (1.0 + e)))
    return xp.where(small, near, far)


def continuous_bernoulli_nll(x_logits, x):
    """Negative log-likelihood of ``x`` under the continuous Bernoulli, per example.

    The density on [0, 1] is ``p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x)``
    with ``lambda = sigmoid(x_logits)`` (Loaiza-Ganem and Cunningham, 2019), so

    ``-log p(x|z) = sum_d softplus(l_d) - x_d l_d - log C(lambda_d)``:

    the binary cross-entropy of :func:`bernoulli_nll` minus the log normalizer
    :func:`log_continuous_bernoulli_norm`. It is a density of grey levels, not a
    probability of binary pixels, so it can be negative, and its values are not
    comparable with a Bernoulli NLL. ``lambda`` is not the mean of x
    (:func:`continuous_bernoulli_mean` is).

    Parameters
    ----------
    x_logits : (N, D) array
    x : (N, D) array, values in [0, 1]

    Returns
    -------
    nll : (N,) array, nats
    """
    return bernoulli_nll(x_logits, x) - log_continuous_bernoulli_norm(x_logits).sum(axis=1)


def continuous_bernoulli_nll_backward(dnll, x_logits, x):
    """``dx_logits = dnll * (sigmoid(l) - x - dlog C/dl)``, shape (N, D)."""
    xp = array_module(x_logits)
    p = 0.5 * (1.0 + xp.tanh(0.5 * x_logits))
    return dnll[:, None] * (p - x - _dlog_cb_norm(x_logits))


def continuous_bernoulli_mean(x_logits):
    """The mean of the continuous Bernoulli with ``lambda = sigmoid(x_logits)``.

    ``E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda))``, which is
    ``1/2 + (coth(u) - 1/u) / 2`` with ``u = l / 2``: 1/2 at ``l = 0`` and closer to
    1/2 than ``lambda`` is everywhere else (for ``l = 4``, ``lambda = 0.982`` but the
    mean is 0.769). This, not ``sigmoid(l)``, is the mean image of a continuous
    Bernoulli decoder. For ``|l| < 2`` the cancelling ``coth(u) - 1/u`` is
    ``u R / (1 + u^2 P)`` from the series of ``R = (u cosh u - sinh u) / u^3``; for
    ``|l| >= 2`` the mean at ``-|l|`` is ``1/|l| + e^-|l| / expm1(-|l|)`` (small, and
    to full relative precision), and a positive logit's is 1 minus that.

    Parameters
    ----------
    x_logits : array, any shape

    Returns
    -------
    mean : array of the same shape, values in (0, 1)
        (in float32 it rounds to 0 or 1 only where |logit| exceeds about 3e7).
    """
    xp = array_module(x_logits)
    small, t, b = _cb_split(x_logits)
    u = 0.5 * t
    u2 = u * u
    near = 0.5 + 0.5 * (u * _poly(u2, _TCOSH_COEF) / (1.0 + u2 * _poly(u2, _SINH_COEF)))
    # the mean at the logit -|l|, 1/2 - (coth(|l|/2) - 2/|l|)/2, without its cancellation:
    # 1/2 - coth(|l|/2)/2 = e^-|l| / expm1(-|l|); then x -> 1 - x for a positive logit
    e = xp.exp(-b)
    low = 1.0 / b + e / xp.expm1(-b)
    far = xp.where(x_logits > 0, 1.0 - low, low)
    return xp.where(small, near, far)


def continuous_bernoulli_sample(x_logits, rng):
    """One draw per entry from the continuous Bernoulli, by inverting its CDF.

    ``F(x) = (lambda^x (1 - lambda)^(1 - x) + lambda - 1) / (2 lambda - 1)``, so
    ``x = log1p(u expm1(l)) / l`` for ``u ~ U(0, 1)``. It is used for ``l <= 0`` only
    (``expm1`` of a negative number never overflows); a positive logit is drawn through
    the symmetry ``x ~ CB(lambda)  <=>  1 - x ~ CB(1 - lambda)``. At ``l = 0`` the
    distribution is uniform and ``x = u``.

    Parameters
    ----------
    x_logits : array, any shape
    rng : numpy.random.Generator

    Returns
    -------
    x : array of the shape and dtype of ``x_logits``, values in [0, 1]
    """
    xp = array_module(x_logits)
    u = xp.asarray(rng.random(x_logits.shape, dtype=np.dtype(x_logits.dtype)))
    positive = x_logits > 0
    v = xp.where(positive, 1.0 - u, u)
    a = -xp.abs(x_logits)
    flat = a == 0
    safe = xp.where(flat, -1.0, a)
    y = xp.where(flat, v, xp.log1p(v * xp.expm1(safe)) / safe)
    return xp.clip(xp.where(positive, 1.0 - y, y), 0.0, 1.0)


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


def kl_per_dim_backward(dkl, mu, log_var):
    """Gradients of :func:`kl_per_dim` from ``dkl`` of shape (N, K), one weight per entry.

    ``dmu = dkl * mu``, ``dlog_var = dkl * expm1(log_var) / 2``; free bits
    (:class:`vae_numpy.objectives.FreeBits`) weigh each unit on its own.
    """
    xp = array_module(mu)
    return dkl * mu, dkl * (0.5 * xp.expm1(log_var))


def gaussian_log_density(z, mu, log_var):
    """``log N(z; mu, diag exp(log_var))`` summed over the last axis.

    Used by the importance-weighted bound; ``mu = 0, log_var = 0`` gives the prior.
    """
    xp = array_module(z)
    return -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 * xp.exp(-log_var)).sum(axis=-1)
