"""Training objectives that combine the model's loss terms: the ELBO and the IWAE bound.

The model (:mod:`vae_numpy.model`) knows one objective, ``mean(rec + beta * kl)``,
with the KL in closed form. An objective here decides what a training step
minimises instead; :func:`vae_numpy.train.fit` takes one as ``objective=``.
Each has the same two methods:

* ``noise(model, n, rng)`` draws the reparameterization noise for a batch of ``n``;
* ``loss_and_grads(model, x, eps)`` returns ``(loss, terms, grads)`` like
  :meth:`vae_numpy.model.VAE.loss_and_grads`, with the gradient written by hand.

The importance-weighted bound (Burda, Grosse and Salakhutdinov, 2016) with k
samples ``z_i = mu + sigma * eps_i`` from q(z|x) is

    L_k(x) = log (1/k) sum_i w_i,   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x).

Its gradient is the normalized importance weights times each sample's gradient
of ``log w_i``: ``dL_k = sum_i w~_i d(log w_i)`` with ``w~_i = w_i / sum_j w_j``.
At k = 1 the weight is 1 and this is the gradient of a one-sample ELBO whose KL is
estimated by the same sample (``log q(z|x) - log p(z)``): its expectation over eps
is the gradient of the closed-form ELBO that :meth:`VAE.backward` computes, but the
two differ draw by draw. Gradients are "total": ``log q(z_i|x)`` is differentiated
through ``z_i`` as well, as in the paper.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError
from .losses import LOG_2PI


class ELBO:
    """The model's own objective: the negative ELBO, ``mean(rec + beta * kl)``.

    With numba on and a ReLU Bernoulli model this is the fused step.
    """

    name = "elbo"
    k = 1

    def noise(self, model, n: int, rng: np.random.Generator):
        return model.noise(n, rng)

    def loss_and_grads(self, model, x, eps, *, check: bool = False):
        return model.loss_and_grads(x, eps, check=check)

    def describe(self, model) -> str:
        from .evaluate import objective_name

        return objective_name(model)


class IWAE:
    """The negative importance-weighted bound ``-mean_x L_k(x)`` with ``k`` samples.

    Parameters
    ----------
    k : int
        Importance samples per example; k = 1 is the one-sample ELBO (KL by
        Monte Carlo).
    """

    name = "iwae"

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"the IWAE objective needs an integer k >= 1; got {k!r}")
        self.k = int(k)

    def noise(self, model, n: int, rng: np.random.Generator):
        """``eps`` of shape (k, n, K) in the model's dtype."""
        eps = rng.standard_normal((self.k, n, model.config.latent_dim), dtype=model.dtype)
        return model.backend.asarray(eps)

    def describe(self, model) -> str:
        return f"negative IWAE bound (k = {self.k})"

    def loss_and_grads(self, model, x, eps, *, check: bool = False):
        """``(loss, terms, grads)``: ``loss = -mean_n L_k(x_n)``, gradients in ``model.grads``.

        ``terms`` holds ``loss``, and ``rec`` and ``kl`` averaged over the k samples
        (``kl`` as the Monte Carlo estimate ``log q - log p``).
        """
        if check:
            model.check_input(x)
        k, n, _ = eps.shape
        log_w, cache = iwae_log_weights(model, x, eps)
        xp = model.backend.xp
        m = log_w.max(axis=0)
        w = xp.exp(log_w - m)
        s = w.sum(axis=0)
        bound = m + xp.log(s) - math.log(k)                  # (n,)
        loss = -bound.mean()
        # dloss/dlog w_in = -w~_in / n, the normalized weights shared out over the batch
        dlog_w = -(w / s) / n
        iwae_log_weights_backward(model, dlog_w, cache)
        rec, kl = cache[-2], cache[-1]
        terms = {"loss": float(loss), "rec": float(rec.mean()), "kl": float(kl.mean())}
        return loss, terms, model.grads


def iwae_log_weights(model, x, eps):
    """``log w_i`` for each example and sample, shape (k, N), and a cache for the backward.

    ``log w = -rec + log p(z) - log q(z|x)`` with ``z = mu + std * eps``, so
    ``log q(z|x) = -1/2 sum (log 2pi + log_var + eps^2)``.

    Parameters
    ----------
    model : VAE
    x : (N, D) array
    eps : (k, N, K) array
    """
    k, n, K = eps.shape
    xp = model.backend.xp
    mu, log_var, enc_cache = model._encode(x)
    std = xp.exp(0.5 * log_var)
    z = mu + std * eps                                       # (k, N, K)
    x_out, dec_cache = model._decode(z.reshape(k * n, K))
    x_rep = xp.broadcast_to(x, (k, *x.shape)).reshape(k * n, -1)
    rec = model.reconstruction_nll(x_out, x_rep).reshape(k, n)
    log_pz = -0.5 * (LOG_2PI + z * z).sum(axis=-1)
    log_qz = -0.5 * (LOG_2PI + log_var + eps * eps).sum(axis=-1)
    kl = log_qz - log_pz                                     # a one-sample KL estimate
    log_w = -rec - kl
    return log_w, (x_rep, eps, std, z, x_out, enc_cache, dec_cache, rec, kl)


def iwae_log_weights_backward(model, dlog_w, cache) -> None:
    """Backward of :func:`iwae_log_weights` from ``dlog_w`` (k, N); fills ``model.grads``."""
    x_rep, eps, std, z, x_out, enc_cache, dec_cache, _, _ = cache
    k, n, K = eps.shape
    # log w = -rec + log p(z) - log q(z|x): each sample's rec enters with weight -dlog_w
    dx_out = model._reconstruction_backward((-dlog_w).reshape(k * n), x_out, x_rep)
    dz = model._decode_backward(dx_out, dec_cache).reshape(k, n, K)
    dz = dz - dlog_w[..., None] * z                          # d log p(z) / dz = -z
    # -log q(z|x) = 1/2 sum (log 2pi + log_var + eps^2): +1/2 per unit of log_var
    dlog_var = 0.5 * dlog_w.sum(axis=0)[:, None] + (dz * eps * (0.5 * std)).sum(axis=0)
    dmu = dz.sum(axis=0)                                     # z_i = mu + std * eps_i
    model._encode_backward(dmu, dlog_var, enc_cache)
