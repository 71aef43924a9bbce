"""Training objectives that combine the model's loss terms: the ELBO with a KL weight and
its warm-up, free bits, and the IWAE bound.

The model (:mod:`vae_numpy.model`) knows one objective, ``mean(rec + beta * kl)``,
with the KL in closed form. An objective here decides what a training step
minimises instead; :func:`vae_numpy.train.fit` takes one as ``objective=``.
Each has these methods:

* ``noise(model, n, rng)`` draws the reparameterization noise for a batch of ``n``;
* ``loss_and_grads(model, x, eps)`` returns ``(loss, terms, grads)`` like
  :meth:`vae_numpy.model.VAE.loss_and_grads`, with the gradient written by hand;
* ``settings()``, a dict of what defines it (``name``, ``k`` and its options), which
  checkpoints record, a resumed run must repeat, and :func:`vae_numpy.train.train_cached`
  keys its cache on;
* ``describe(model)``, its name in words;

and the ELBO family (:class:`ELBO`, :class:`FreeBits`) two more: ``beta(model, epoch)``,
the KL weight of an epoch, which ``fit`` records in the history and passes on as
``loss_and_grads(..., beta=...)``; and ``check(model, epochs)``, which refuses a
setting that cannot train this model for that many epochs.

**Beta and KL warm-up.** ``beta`` (``ModelConfig.beta``) weighs the KL term:
``mean(rec + beta * kl)``, the negative ELBO at beta = 1. A warm-up of W epochs
(``ELBO(kl_warmup=W)``) anneals the weight linearly from 0 to beta over W epochs, as
Sonderby et al. (2016, the ladder VAE) do, to keep the KL from switching the code off
before the decoder has learned to use it (Bowman et al., 2016, anneal it per step):

    beta_e = beta * min(1, e / W)   for epochs e = 1, 2, ...

so the line runs from 0 (the untrained model, epoch 0) through beta at the end of
epoch W, and stays there. The weight changes per epoch, not per step: every step of
an epoch then minimises one objective, so the epoch's ``train_loss`` in the history
is that objective's mean and its ``beta`` the very weight used; a resumed run needs
only its epoch number. W may equal the run's length (its last epoch trains at beta)
but not exceed it: that run would end before reaching the objective it is named
after. (So a run cannot be planned in parts shorter than its warm-up; a run that is
interrupted, with a checkpoint per epoch, resumes in the middle of its ramp.) The
ramp ends at the model's beta, which is 1 unless a beta-VAE asks for more or less;
beta = 0 leaves nothing to ramp and is refused.

**Free bits** (Kingma et al., 2016, the IAF paper, section "free bits"): the KL of
each latent unit, averaged over the minibatch, is floored at lambda nats,

    loss = mean_n rec_n + beta * sum_u max(lambda, mean_n KL_nu),

so a unit whose batch-mean KL is below lambda gets no gradient from the KL (only from
the reconstruction, through z) and is free to carry up to lambda nats of information
without paying for it. The paper floors groups of units; here each unit is its own
group. At the kink (a mean of exactly lambda) the gradient taken is 0. Combined
with a warm-up, beta is the epoch's ``beta_e``.

**What is reported.** Both are ways of training; neither changes what a trained model
is scored by. The test numbers after each epoch and ``evaluate`` are the negative
ELBO with the model's beta (:func:`vae_numpy.evaluate.negative_elbo`): the negative
ELBO for a warm-up or free-bits run with beta = 1, whatever weight or floor its last
step used. The ``train_loss`` of the history is the objective the epoch minimised,
and its ``train_kl`` the KL itself (no floor, no weight).

**The fused path.** A warm-up runs on it: its weight is one number, which the fused
KL kernels already take. Free bits do not: the floor needs each unit's batch-mean
KL before any gradient, and a weight per unit in the backward kernel, which the
fused step does not have. :class:`FreeBits` therefore always runs the reference
path (the model's own ``_encode`` / ``_decode`` and their backward passes), on
every backend, at that path's speed.

The importance-weighted bound (Burda, Grosse and Salakhutdinov, 2016) with k
samples ``z_i = mu + sigma * eps_i`` from q(z|x) is

    L_k(x) = log (1/k) sum_i w_i,   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x).

Its gradient is the normalized importance weights times each sample's gradient
of ``log w_i``: ``dL_k = sum_i w~_i d(log w_i)`` with ``w~_i = w_i / sum_j w_j``.
At k = 1 the weight is 1 and this is the gradient of a one-sample ELBO whose KL is
estimated by the same sample (``log q(z|x) - log p(z)``): its expectation over eps
is the gradient of the closed-form ELBO that :meth:`VAE.backward` computes, but the
two differ draw by draw. Gradients are "total": ``log q(z_i|x)`` is differentiated
through ``z_i`` as well, as in the paper. It has no KL term, so neither a beta, a
warm-up nor free bits apply to it.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import losses
from .backend import array_module
from .errors import ConfigError
from .losses import LOG_2PI

#: What a checkpoint's objective record means where a key is missing (checkpoints
#: written before warm-up and free bits existed record only ``name`` and ``k``).
SETTING_DEFAULTS = {"k": 1, "kl_warmup": 0, "free_bits": 0.0}


def same_settings(a: dict, b: dict) -> bool:
    """Whether two objective records (``settings()``, or a checkpoint's) describe one objective."""
    return {**SETTING_DEFAULTS, **a} == {**SETTING_DEFAULTS, **b}


def settings_words(d: dict) -> str:
    """An objective record as the command line would ask for it (for error messages)."""
    d = {**SETTING_DEFAULTS, **d}
    if d.get("name") == "iwae":
        return f"--objective iwae --iw-k {d['k']}"
    words = f"--objective {d.get('name', 'elbo')}" if d.get("name") != "free_bits" else (
        f"--free-bits {d['free_bits']:g}")
    if d["kl_warmup"]:
        words += f" --kl-warmup {d['kl_warmup']}"
    return words


def kl_warmup_beta(epoch: int, kl_warmup: int, beta: float = 1.0) -> float:
    """The KL weight of ``epoch`` (from 1) under a linear warm-up of ``kl_warmup`` epochs.

    ``beta * min(1, epoch / kl_warmup)``; ``beta`` itself when ``kl_warmup`` is 0.

    >>> [kl_warmup_beta(e, 4) for e in range(1, 7)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """
    if kl_warmup == 0:
        return float(beta)
    return float(beta) * min(1.0, epoch / kl_warmup)


def free_bits_kl(kl, free_bits: float):
    """The free-bits KL term ``sum_u max(lambda, mean_n kl[n, u])`` and its cache.

    Parameters
    ----------
    kl : (N, K) array
        The KL of each example's posterior in each unit (:func:`losses.kl_per_dim`).
    free_bits : float
        lambda, nats per unit.

    Returns
    -------
    term : 0-d array
    kl_mean : (K,) array, the batch mean of each unit's KL (the cache)
    """
    xp = array_module(kl)
    kl_mean = kl.mean(axis=0)
    return xp.maximum(kl_mean, free_bits).sum(), kl_mean


def free_bits_kl_backward(dterm, kl_mean, free_bits: float, n: int):
    """``dkl``, shape (N, K): ``dterm / n`` in the units whose batch-mean KL exceeds lambda,
    0 in the others (held at the floor; at exactly lambda too)."""
    xp = array_module(kl_mean)
    above = (kl_mean > free_bits).astype(kl_mean.dtype)
    return xp.broadcast_to(above * (dterm / n), (n, kl_mean.shape[0]))


def _check_warmup(kl_warmup) -> int:
    if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, (int, np.integer)) \
            or kl_warmup < 0:
        raise ConfigError(f"kl_warmup must be a whole number of epochs >= 0 (0: none); got "
                          f"{kl_warmup!r}")
    return int(kl_warmup)


class ELBO:
    """The model's own objective, ``mean(rec + beta * kl)``, optionally with a KL warm-up.

    With numba on and a ReLU Bernoulli model this is the fused step, warm-up included.

    Parameters
    ----------
    kl_warmup : int
        W: anneal the KL weight linearly from 0 to the model's beta over the first W
        epochs (:func:`kl_warmup_beta`); 0, the default, trains at beta throughout.
    """

    name = "elbo"
    k = 1

    def __init__(self, kl_warmup: int = 0):
        self.kl_warmup = _check_warmup(kl_warmup)

    def noise(self, model, n: int, rng: np.random.Generator):
        return model.noise(n, rng)

    def beta(self, model, epoch: int) -> float | None:
        """The KL weight of ``epoch`` (from 1); None for an autoencoder, which has no KL."""
        if model.config.kind != "vae":
            return None
        return kl_warmup_beta(epoch, self.kl_warmup, model.config.beta)

    def check(self, model, epochs: int) -> None:
        """Raise :class:`ConfigError` if this objective cannot train ``model`` up to ``epochs``."""
        W = self.kl_warmup
        if W == 0:
            return
        if model.config.kind != "vae":
            raise ConfigError("KL warm-up needs a VAE; an autoencoder has no KL term to weigh")
        if model.config.beta == 0:
            raise ConfigError("KL warm-up ramps the KL weight from 0 up to the model's beta; "
                              "with beta = 0 there is nothing to ramp (give beta > 0, or no "
                              "warm-up)")
        if W > epochs:
            raise ConfigError(f"a KL warm-up of {W} epochs is longer than the run ({epochs} "
                              f"epochs): it would end at beta = "
                              f"{kl_warmup_beta(epochs, W, model.config.beta):.3g}, short of "
                              f"{model.config.beta:g}; give a warm-up of at most {epochs} "
                              "epochs, or train longer")

    def loss_and_grads(self, model, x, eps, *, y=None, check: bool = False,
                       beta: float | None = None):
        return model.loss_and_grads(x, eps, y=y, check=check, beta=beta)

    def settings(self) -> dict:
        return {"name": self.name, "k": self.k, "kl_warmup": self.kl_warmup}

    def describe(self, model) -> str:
        from .evaluate import objective_name

        words = objective_name(model)
        if self.kl_warmup and model.config.kind == "vae":
            words += (f", with a KL warm-up over {self.kl_warmup} epochs (beta from "
                      f"{kl_warmup_beta(1, self.kl_warmup, model.config.beta):.3g} to "
                      f"{model.config.beta:g})")
        return words


class FreeBits(ELBO):
    """Free bits (Kingma et al., 2016): ``mean(rec) + beta * sum_u max(lambda, mean_n KL_nu)``.

    Always on the reference path (see the module docstring); the gradient is written
    out below, with :func:`free_bits_kl_backward` for the floor.

    Parameters
    ----------
    free_bits : float
        lambda, the floor on each latent unit's batch-mean KL, in nats (>= 0; 0 is the
        ELBO, computed on the reference path).
    kl_warmup : int
        As for :class:`ELBO`: the weight beta of the floored KL ramps up over W epochs.
    """

    name = "free_bits"

    def __init__(self, free_bits: float, kl_warmup: int = 0):
        super().__init__(kl_warmup)
        ok = isinstance(free_bits, (int, float, np.floating)) and not isinstance(free_bits, bool)
        if not (ok and math.isfinite(free_bits) and free_bits >= 0):
            raise ConfigError(f"free_bits (lambda, nats per latent unit) must be a finite "
                              f"number >= 0; got {free_bits!r}")
        self.free_bits = float(free_bits)

    def settings(self) -> dict:
        return {**super().settings(), "free_bits": self.free_bits}

    def describe(self, model) -> str:
        beta = model.config.beta
        words = (f"free-bits objective (lambda = {self.free_bits:g} nats per latent unit"
                 f"{'' if beta == 1 else f', beta = {beta:g}'})")
        if self.kl_warmup:
            words += (f", with a KL warm-up over {self.kl_warmup} epochs (beta from "
                      f"{kl_warmup_beta(1, self.kl_warmup, beta):.3g} to {beta:g})")
        return words

    def loss_and_grads(self, model, x, eps, *, y=None, check: bool = False,
                       beta: float | None = None):
        """``(loss, terms, grads)``: the free-bits loss, gradients in ``model.grads``.

        ``terms`` holds ``loss`` (the objective), ``rec`` and ``kl`` (the KL itself,
        summed over units, no floor) as batch means, and ``units_at_floor``.
        """
        if check:
            model.check_input(x)
            model._check_noise(eps, x.shape[0])
        n = x.shape[0]
        xp = model.backend.xp
        beta = model._kl_weight(beta)
        lam = self.free_bits
        c = model.condition(y, n)                            # None unless conditional
        # forward
        mu, log_var, enc_cache = model._encode(x, c)
        z, z_cache = F.reparameterize_forward(mu, log_var, eps)
        x_out, dec_cache = model._decode(z, c)
        rec = model.reconstruction_nll(x_out, x)
        kl = losses.kl_per_dim(mu, log_var)                  # (N, K)
        kl_term, kl_mean = free_bits_kl(kl, lam)
        loss = rec.mean() + beta * kl_term
        # backward: loss = mean(rec) + beta * sum_u max(lambda, mean_n kl_nu)
        drec = xp.full(n, 1.0 / n, dtype=model.dtype)
        dx_out = model._reconstruction_backward(drec, x_out, x)
        dz = model._decode_backward(dx_out, dec_cache)
        dmu, dlog_var = F.reparameterize_backward(dz, z_cache)
        dkl = free_bits_kl_backward(beta, kl_mean, lam, n)  # 0 in the floored units
        dmu_kl, dlog_var_kl = losses.kl_per_dim_backward(dkl, mu, log_var)
        # mu and log_var reach the loss twice, through z and through the KL: add both paths
        model._encode_backward(dmu + dmu_kl, dlog_var + dlog_var_kl, enc_cache)
        terms = {"loss": float(loss), "rec": float(rec.mean()),
                 "kl": float(kl.sum(axis=1).mean()),
                 "units_at_floor": int((kl_mean <= lam).sum())}
        return loss, terms, model.grads


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

    def settings(self) -> dict:
        return {"name": self.name, "k": self.k}

    def loss_and_grads(self, model, x, eps, *, y=None, check: bool = False):
        """``(loss, terms, grads)``: ``loss = -mean_n L_k(x_n)``, gradients in ``model.grads``.

        ``terms`` holds ``loss``, and ``rec`` and ``kl`` averaged over the k samples
        (``kl`` as the Monte Carlo estimate ``log q - log p``).
        """
        if check:
            model.check_input(x)
        k, n, _ = eps.shape
        log_w, cache = iwae_log_weights(model, x, eps, y=y)
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


def iwae_log_weights(model, x, eps, y=None):
    """``log w_i`` for each example and sample, shape (k, N), and a cache for the backward.

    ``log w = -rec + log p(z) - log q(z|x)`` with ``z = mu + std * eps``, so
    ``log q(z|x) = -1/2 sum (log 2pi + log_var + eps^2)``.

    Parameters
    ----------
    model : VAE
    x : (N, D) array
    eps : (k, N, K) array
    y : (N,) integer array, optional
        The labels, for a conditional model: every sample of an example is decoded
        with its label.
    """
    k, n, K = eps.shape
    xp = model.backend.xp
    c = model.condition(y, n)
    mu, log_var, enc_cache = model._encode(x, c)
    std = xp.exp(0.5 * log_var)
    z = mu + std * eps                                       # (k, N, K)
    c_rep = None if c is None else xp.broadcast_to(c, (k, *c.shape)).reshape(k * n, -1)
    x_out, dec_cache = model._decode(z.reshape(k * n, K), c_rep)
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
