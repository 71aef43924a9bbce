"""Evaluation: the negative ELBO on held-out data, the importance-weighted bound,
and how much each latent unit is used."""

from __future__ import annotations

import math

import numpy as np

from . import losses
from .errors import ConfigError
from .model import VAE

EVAL_SEED = 2013  # the noise of evaluation, fixed so a test ELBO is reproducible


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def negative_elbo(model, x, *, batch_size: int = 1000, rng=EVAL_SEED) -> dict[str, float]:
    """Mean loss, reconstruction term and KL term over ``x``, in nats per example.

    For a VAE this is ``-ELBO`` (with the model's ``beta``) estimated with one draw
    of ``eps`` per example from ``rng`` (a seed or a Generator), so two calls with
    the same seed agree exactly. For an autoencoder it is the reconstruction loss.
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    xp = model.backend.xp
    x = xp.asarray(x)
    model.check_input(x)
    totals = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    n = x.shape[0]
    for s in _batches(n, batch_size):
        xb = x[s]
        _, terms, _ = model.forward(xb, model.noise(xb.shape[0], rng), check=False)
        for key in totals:
            totals[key] += terms[key] * xb.shape[0]
    return {key: value / n for key, value in totals.items()}


def log_importance_weights(model: VAE, x, k: int, rng: np.random.Generator):
    """``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)`` for k draws z_i ~ q(z|x).

    Returns a (k, N) float64 array; ``logsumexp(log_w, 0) - log k`` is the
    importance-weighted bound, and its k = 1 case is a one-sample ELBO.
    """
    xp = model.backend.xp
    mu, log_var = model.encode(x)
    n, K = mu.shape
    eps = model.backend.asarray(
        rng.standard_normal((k, n, K), dtype=model.dtype)
    )
    z = mu + xp.exp(0.5 * log_var) * eps                         # (k, N, K)
    x_out = model.decode(z.reshape(k * n, K))
    x_rep = xp.broadcast_to(x, (k, *x.shape)).reshape(k * n, -1)
    log_px_z = -model.reconstruction_nll(x_out, x_rep).reshape(k, n)
    zeros = xp.zeros((), dtype=model.dtype)
    log_pz = losses.gaussian_log_density(z, zeros, zeros)
    log_qz = losses.gaussian_log_density(z, mu, log_var)
    return model.backend.asnumpy(log_px_z + log_pz - log_qz).astype(np.float64)


def iw_log_likelihood(model: VAE, x, k: int = 100, *, rng=EVAL_SEED, max_rows: int = 20000,
                      per_example: bool = False):
    """Importance-weighted estimate of log p(x) (Burda et al., 2016), nats per example.

    ``log p(x) >= E[log (1/k) sum_i w_i]``, a bound that tightens as k grows and is
    the ELBO at k = 1.

    Parameters
    ----------
    model : VAE
    x : (N, D) array
    k : int
        Importance samples per example.
    max_rows : int
        At most this many decoded images at once (k times the batch), to bound memory.
    per_example : bool
        Return the (N,) estimates instead of their mean.
    """
    if not isinstance(model, VAE):
        raise ConfigError("the importance-weighted bound needs a VAE "
                          "(an autoencoder has no q(z|x))")
    if int(k) < 1:
        raise ConfigError(f"k (importance samples) must be >= 1; got {k}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    xp = model.backend.xp
    x = xp.asarray(x)
    model.check_input(x)
    batch = max(1, max_rows // k)
    out = np.empty(x.shape[0])
    for s in _batches(x.shape[0], batch):
        log_w = log_importance_weights(model, x[s], k, rng)
        m = log_w.max(axis=0)
        out[s] = m + np.log(np.exp(log_w - m).mean(axis=0))
    return out if per_example else float(out.mean())


def kl_per_dimension(model: VAE, x, *, batch_size: int = 1000) -> np.ndarray:
    """Mean KL(q(z_k|x) || N(0, 1)) of each latent unit over ``x``, shape (K,)."""
    xp = model.backend.xp
    x = xp.asarray(x)
    total = np.zeros(model.config.latent_dim)
    for s in _batches(x.shape[0], batch_size):
        mu, log_var = model.encode(x[s])
        total += model.backend.asnumpy(losses.kl_per_dim(mu, log_var).sum(axis=0))
    return total / x.shape[0]


def active_units(model: VAE, x, *, threshold: float = 0.01, batch_size: int = 1000) -> int:
    """Latent units whose mean code varies with the input: Cov_x(E_q[z_k]) > threshold.

    The measure of Burda et al. (2016): a unit whose mu is the same for every x
    carries no information about x (it has collapsed to the prior).
    """
    xp = model.backend.xp
    x = xp.asarray(x)
    mus = [model.backend.asnumpy(model.encode(x[s])[0]) for s in _batches(x.shape[0], batch_size)]
    variance = np.concatenate(mus).astype(np.float64).var(axis=0)
    return int((variance > threshold).sum())


def bits_per_dim(nats_per_example: float, dims: int = 784) -> float:
    """Convert nats per example to bits per dimension."""
    return nats_per_example / (dims * math.log(2.0))


def nearest_neighbours(a, b, *, chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a`` (n, D), the nearest row of ``b`` (m, D), by Euclidean distance.

    Computed in float64 from ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``, ``chunk`` rows of
    ``a`` at a time (so an (n, m) matrix never needs to fit in memory). The book uses it
    to ask which real digit a decoded image looks like, and how far a code lies from
    the training codes.

    Returns
    -------
    idx : (n,) int array, the row of ``b`` nearest to each row of ``a``
    dist : (n,) float64 array, its distance
    """
    b64 = np.asarray(b, dtype=np.float64)
    bb = (b64 ** 2).sum(axis=1)
    idx, dist = [], []
    for s in range(0, len(a), chunk):
        aa = np.asarray(a[s:s + chunk], dtype=np.float64)
        d2 = (aa ** 2).sum(axis=1)[:, None] + bb[None, :] - 2 * aa @ b64.T
        i = d2.argmin(axis=1)
        idx.append(i)
        dist.append(np.sqrt(np.maximum(d2[np.arange(len(i)), i], 0)))
    if not idx:
        return np.zeros(0, dtype=np.intp), np.zeros(0)
    return np.concatenate(idx), np.concatenate(dist)
