"""Evaluation: the negative ELBO on held-out data, the importance-weighted bound,
and how much each latent unit is used."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import losses
from .errors import ConfigError
from .model import VAE

EVAL_SEED = 2013  # the noise of evaluation, fixed so a test ELBO is reproducible


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _labels(model, y, n: int):
    """``y`` checked once for the whole set (None for an unconditional model), on the device."""
    model.condition(y, n)
    return None if y is None else model.backend.xp.asarray(y)


def _rows(y, s):
    return None if y is None else y[s]


def negative_elbo(model, x, *, y=None, batch_size: int = 1000,
                  rng=EVAL_SEED) -> dict[str, float]:
    """Mean loss, reconstruction term and KL term over ``x``, in nats per example.

    For a VAE this is ``-ELBO`` (with the model's ``beta``) estimated with one draw
    of ``eps`` per example from ``rng`` (a seed or a Generator), so two calls with
    the same seed agree exactly. For an autoencoder it is the reconstruction loss.
    A conditional model needs the labels ``y`` (and gives -log p(x|y)'s bound).
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    xp = model.backend.xp
    x = xp.asarray(x)
    model.check_input(x)
    totals = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    n = x.shape[0]
    y = _labels(model, y, n)
    for s in _batches(n, batch_size):
        xb = x[s]
        _, terms, _ = model.forward(xb, model.noise(xb.shape[0], rng), y=_rows(y, s),
                                    check=False)
        for key in totals:
            totals[key] += terms[key] * xb.shape[0]
    return {key: value / n for key, value in totals.items()}


def objective_name(model) -> str:
    """What :func:`negative_elbo`'s ``loss`` is for this model, as it should be printed.

    "negative ELBO" only when it is one (a VAE with beta = 1); otherwise the name says
    it is the beta-weighted objective, or an autoencoder's reconstruction loss.
    """
    if model.config.kind != "vae":
        return "reconstruction loss"
    beta = model.config.beta
    return "negative ELBO" if beta == 1 else f"beta-weighted objective (beta = {beta:g})"


def _require_vae(model, what: str) -> None:
    if not isinstance(model, VAE):
        raise ConfigError(f"{what} needs a VAE; an autoencoder has no q(z|x)")


def log_importance_weights(model: VAE, x, k: int, rng: np.random.Generator, y=None):
    """``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)`` for k draws z_i ~ q(z|x).

    Returns a (k, N) float64 array; ``logsumexp(log_w, 0) - log k`` is the
    importance-weighted bound, and its k = 1 case is a one-sample ELBO. The weights
    are the IWAE objective's (:func:`vae_numpy.objectives.iwae_log_weights`).
    """
    from .objectives import iwae_log_weights

    eps = rng.standard_normal((k, x.shape[0], model.config.latent_dim), dtype=model.dtype)
    log_w, _ = iwae_log_weights(model, x, model.backend.asarray(eps), y=y)
    return model.backend.asnumpy(log_w).astype(np.float64)


@dataclass
class IWEstimate:
    """What :func:`iw_estimate` returns: the bound on log p(x) and how sure it is."""

    log_likelihood: float  #: mean over examples of log (1/k) sum_i w_i, nats
    stderr: float          #: standard error of that mean over examples
    k: int
    n: int
    seconds: float
    per_example: np.ndarray = field(repr=False)

    @property
    def nll(self) -> float:
        """The estimate of -log p(x): an upper bound in expectation, as reported in papers."""
        return -self.log_likelihood


def iw_estimate(model: VAE, x, k: int = 100, *, y=None, rng=EVAL_SEED, max_rows: int = 20000,
                progress: bool = False) -> IWEstimate:
    """Importance-weighted estimate of log p(x) (Burda et al., 2016), nats per example.

    ``log p(x) >= E[log (1/k) sum_i w_i]``, a bound that tightens as k grows and is
    the ELBO at k = 1. Memory stays bounded for any k: at most ``max_rows`` images are
    decoded at once, the k samples taken in chunks and combined by a running
    log-sum-exp. Papers report ``-log p(x)`` at k = 5000 over the 10,000 test digits.
    A conditional model needs the labels ``y``; its bound is on log p(x|y).

    Returns
    -------
    IWEstimate
        The mean, its standard error over examples (``std / sqrt(N)``; the noise of
        the k samples is inside each example's value), k, N, the seconds taken and
        the per-example values.
    """
    _require_vae(model, "the importance-weighted bound")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k (importance samples) must be an integer >= 1; got {k!r}")
    k = int(k)
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    xp = model.backend.xp
    x = xp.asarray(x)
    model.check_input(x)
    n = x.shape[0]
    y = _labels(model, y, n)
    batch = max(1, min(n, max_rows // k))       # examples at once
    chunk = max(1, min(k, max_rows // batch))   # samples at once
    out = np.empty(n)
    t0 = time.perf_counter()
    bar = progress_bar(n, f"IW bound, k={k}", progress)
    for s in _batches(n, batch):
        xb = x[s]
        m = np.full(xb.shape[0], -np.inf)
        acc = np.zeros(xb.shape[0])             # sum_i exp(log w_i - m)
        for c in range(0, k, chunk):
            log_w = log_importance_weights(model, xb, min(chunk, k - c), rng, y=_rows(y, s))
            m_new = np.maximum(m, log_w.max(axis=0))
            acc = acc * np.exp(m - m_new) + np.exp(log_w - m_new).sum(axis=0)
            m = m_new
        out[s] = m + np.log(acc) - math.log(k)
        if bar is not None:
            bar.update(xb.shape[0])
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    stderr = float(out.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return IWEstimate(float(out.mean()), stderr, k, n, seconds, out)


def iw_log_likelihood(model: VAE, x, k: int = 100, *, y=None, rng=EVAL_SEED,
                      max_rows: int = 20000, per_example: bool = False):
    """The mean (or, with ``per_example``, the (N,) values) of :func:`iw_estimate`."""
    est = iw_estimate(model, x, k, y=y, rng=rng, max_rows=max_rows)
    return est.per_example if per_example else est.log_likelihood


def progress_bar(total: int, desc: str, enabled: bool, mininterval: float = 1.0):
    """A tqdm bar (notebook-aware) that disappears when done, or None when not ``enabled``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, mininterval=mininterval)


def kl_per_dimension(model: VAE, x, *, y=None, batch_size: int = 1000) -> np.ndarray:
    """Mean KL(q(z_k|x) || N(0, 1)) of each latent unit over ``x``, shape (K,)."""
    _require_vae(model, "the KL per dimension")
    xp = model.backend.xp
    x = xp.asarray(x)
    total = np.zeros(model.config.latent_dim)
    y = _labels(model, y, x.shape[0])
    for s in _batches(x.shape[0], batch_size):
        mu, log_var = model.encode(x[s], _rows(y, s))
        total += model.backend.asnumpy(losses.kl_per_dim(mu, log_var).sum(axis=0))
    return total / x.shape[0]


def active_units(model: VAE, x, *, y=None, threshold: float = 0.01,
                 batch_size: int = 1000) -> int:
    """Latent units whose mean code varies with the input: Var_x(E_q[z_u]) > threshold.

    The measure of Burda et al. (2016): the *variance* over the data (not the
    standard deviation) of each unit's posterior mean ``mu_u(x)``, against 0.01. A
    unit whose mu is the same for every x carries no information about x (it has
    collapsed to the prior).
    """
    _require_vae(model, "active units")
    xp = model.backend.xp
    x = xp.asarray(x)
    y = _labels(model, y, x.shape[0])
    mus = [model.backend.asnumpy(model.encode(x[s], _rows(y, s))[0])
           for s in _batches(x.shape[0], batch_size)]
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
