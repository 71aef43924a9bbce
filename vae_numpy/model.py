"""The autoencoder and the variational autoencoder, with their backward passes.

Both models are MLPs: an encoder of hidden layers (ReLU, or tanh as in the IWAE
paper: ``activation``), a code (a point ``z`` for the autoencoder, a Gaussian
``q(z|x) = N(mu, diag exp(log_var))`` for the VAE), and a decoder of hidden layers
of the same activation whose last layer is linear. The decoder's output ``x_out``
is read through the likelihood p(x|z):

* ``bernoulli``: ``x_out`` are the logits of per-pixel Bernoulli means
  (``x_logits``); the reconstruction loss is the binary cross-entropy.
* ``gaussian``: ``x_out`` are per-pixel means; the variance is either fixed
  (``gaussian_std``) or learned, one log-variance per pixel (``dec.log_var_x``).
* ``continuous_bernoulli``: ``x_out`` are logits, as for the Bernoulli, of a density
  on [0, 1] for grey levels, ``C(lambda) lambda^x (1 - lambda)^(1 - x)`` (Loaiza-Ganem
  and Cunningham, 2019): the Bernoulli's cross-entropy minus ``log C(lambda)``
  (:func:`vae_numpy.losses.continuous_bernoulli_nll`). Its mean image is
  :func:`vae_numpy.losses.continuous_bernoulli_mean`, not ``sigmoid(x_out)``.

A *conditional* model (``num_classes = C > 0``, Sohn et al., 2015) also reads a
label y, one-hot as ``c`` (N, C): the encoder's first layer sees the concatenation
``[x, c]`` and the decoder's first layer ``[z, c]``, so q(z|x, y) and p(x|z, y), with
the prior p(z) = N(0, I) unchanged. Every method that reads data or codes then takes
the labels ``y`` (integers, shape (N,)); an unconditional model refuses them. The
first layers' weights grow by C rows, ``enc.W1`` (D + C, H1) and ``dec.W1``
(K + C, H_last); no parameter is added. Conditional models take the readable path,
not the fused step.

The loss is per example, averaged over the batch:
``loss = mean(rec + beta * kl)`` for the VAE (the negative ELBO when beta = 1)
and ``loss = mean(rec)`` for the autoencoder.

Parameter names (the keys of ``model.params``, also used in checkpoints), for
``hidden_dims = (H1, H2, ...)``:

==========================  ==================  ===================================
name                        shape               role
==========================  ==================  ===================================
``enc.W1``, ``enc.b1``      (D [+ C], H1), ...  first encoder layer (activation)
``enc.W2``, ``enc.b2``      (H1, H2), (H2,)     next encoder layer, and so on
``enc.W_mu``, ``enc.b_mu``  (H_last, K), (K,)   VAE: mean of q(z|x)
``enc.W_log_var``, ...b..   (H_last, K), (K,)   VAE: log-variance of q(z|x)
``enc.W_z``, ``enc.b_z``    (H_last, K), (K,)   autoencoder: the code z
``dec.W1``, ``dec.b1``      (K [+ C], H_last)   first decoder layer (activation)
``dec.W_out``, ``dec.b_out`` (H1, D), (D,)      output layer (linear)
``dec.log_var_x``           (D,)                Gaussian decoder, learned variance
==========================  ==================  ===================================

All parameters are views into one contiguous buffer ``model.flat`` and all
gradients into ``model.grad_flat``, in the order above, so an optimizer can
update every parameter in one pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import functional as F
from . import losses
from .backend import get_backend
from .errors import ConfigError, InputError

KINDS = ("vae", "ae")
LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli")
#: The likelihoods whose decoder outputs logits and whose data must lie in [0, 1].
LOGIT_LIKELIHOODS = ("bernoulli", "continuous_bernoulli")
ACTIVATIONS = tuple(F.ACTIVATIONS)
#: The smallest standard deviation a *learned* per-pixel Gaussian variance may reach,
#: by default. Without a floor the likelihood is unbounded on MNIST: 67 pixels are 0 in
#: every training image, so their sigma can shrink towards 0 and -log p(x|z) towards
#: minus infinity. 1/255 is one grey level.
GAUSSIAN_STD_FLOOR = 1.0 / 255.0


@dataclass(frozen=True)
class ModelConfig:
    """What defines a model's architecture and loss.

    Parameters
    ----------
    kind : {"vae", "ae"}
        A variational autoencoder or a plain autoencoder.
    input_dim : int
        D, pixels per image (784 for MNIST).
    hidden_dims : tuple of int
        Widths of the encoder's hidden layers; the decoder mirrors them.
    latent_dim : int
        K, size of the code z.
    likelihood : {"bernoulli", "gaussian", "continuous_bernoulli"}
        The decoder's distribution p(x|z) (see the module docstring).
    gaussian_std : float or None
        Gaussian decoder only: a fixed standard deviation, or None to learn one
        log-variance per pixel.
    beta : float
        Weight of the KL term (VAE only); 1 gives the ELBO. A KL warm-up and free bits
        are not settings of the model but ways of training it
        (:mod:`vae_numpy.objectives`, recorded in a checkpoint's objective record): the
        configuration, and the loss :meth:`VAE.forward` computes and evaluation
        reports, stay the same however the model was trained.
    activation : {"relu", "tanh"}
        The nonlinearity of every hidden layer, encoder and decoder.
    gaussian_std_floor : float
        Gaussian decoder with a learned variance only: the standard deviation of each
        pixel is ``max(exp(log_var_x / 2), gaussian_std_floor)``, so the likelihood
        stays bounded (:data:`GAUSSIAN_STD_FLOOR`, one grey level, by default; 0 turns
        the floor off).
    num_classes : int
        C > 0 makes the model conditional on a label in ``0 .. C - 1`` (one-hot,
        concatenated to the encoder's and the decoder's inputs); 0, the default, is
        an unconditional model.
    """

    kind: str = "vae"
    input_dim: int = 784
    hidden_dims: tuple[int, ...] = (400,)
    latent_dim: int = 20
    likelihood: str = "bernoulli"
    gaussian_std: float | None = None
    beta: float = 1.0
    activation: str = "relu"
    gaussian_std_floor: float = GAUSSIAN_STD_FLOOR
    num_classes: int = 0
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"likelihood must be one of {LIKELIHOODS}; got {self.likelihood!r}")
        for name in ("input_dim", "latent_dim"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        if any(not isinstance(h, (int, np.integer)) or h < 1 for h in self.hidden_dims):
            raise ConfigError(f"hidden_dims must be positive integers; got {self.hidden_dims!r}")
        if self.gaussian_std is not None:
            if self.likelihood != "gaussian":
                raise ConfigError("gaussian_std is only used with likelihood='gaussian'")
            if not self.gaussian_std > 0:
                raise ConfigError(f"gaussian_std must be > 0; got {self.gaussian_std!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {ACTIVATIONS}; got {self.activation!r}")
        floor = self.gaussian_std_floor
        if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor >= 0):
            raise ConfigError(f"gaussian_std_floor must be a number >= 0; got {floor!r}")
        c = self.num_classes
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
            raise ConfigError(f"num_classes must be an integer >= 0 (0: unconditional); "
                              f"got {c!r}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ConfigError(f"beta must be a finite number >= 0; got {self.beta!r}")

    def to_json(self) -> str:
        """The configuration as a JSON string (stored in checkpoints)."""
        d = asdict(self)
        d.pop("_checked")
        d["hidden_dims"] = list(d["hidden_dims"])
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        known = {k for k in cls.__dataclass_fields__ if not k.startswith("_")}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys {sorted(unknown)}")
        return cls(**d)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, in storage order."""
        shapes: dict[str, tuple[int, ...]] = {}
        # a conditional model's first layers also read the one-hot label: C more rows
        C = self.num_classes
        sizes = (self.input_dim + C, *self.hidden_dims)
        for i in range(len(self.hidden_dims)):
            shapes[f"enc.W{i + 1}"] = (sizes[i], sizes[i + 1])
            shapes[f"enc.b{i + 1}"] = (sizes[i + 1],)
        heads = ("mu", "log_var") if self.kind == "vae" else ("z",)
        for head in heads:
            shapes[f"enc.W_{head}"] = (sizes[-1], self.latent_dim)  # (D + C, K) if no hidden
            shapes[f"enc.b_{head}"] = (self.latent_dim,)
        dec_sizes = (self.latent_dim + C, *reversed(self.hidden_dims))
        for i in range(len(self.hidden_dims)):
            shapes[f"dec.W{i + 1}"] = (dec_sizes[i], dec_sizes[i + 1])
            shapes[f"dec.b{i + 1}"] = (dec_sizes[i + 1],)
        shapes["dec.W_out"] = (dec_sizes[-1], self.input_dim)
        shapes["dec.b_out"] = (self.input_dim,)
        if self.likelihood == "gaussian" and self.gaussian_std is None:
            shapes["dec.log_var_x"] = (self.input_dim,)
        return shapes


class ParamDict(dict):
    """``model.params`` and ``model.grads``: name -> array, plus the model's ``backend``.

    An optimizer built from ``model.params`` reads ``backend`` to decide whether to
    use the numba kernels (:class:`vae_numpy.optim.Adam`), so the choice follows the
    model rather than the environment.
    """

    def __init__(self, *args, backend=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise InputError(f"rng must be a numpy.random.Generator or an int seed; got {type(rng)}")


class _MLPModel:
    """What the autoencoder and the VAE share: parameters, decoder, likelihood."""

    def __init__(self, config: ModelConfig | None = None, rng=0, *, dtype=np.float32,
                 backend=None, **overrides):
        if config is None:
            config = ModelConfig(kind=self.kind, **overrides)
        elif overrides:
            config = ModelConfig(**{**json.loads(config.to_json()), **overrides})
        if config.kind != self.kind:
            raise ConfigError(
                f"{type(self).__name__} needs kind={self.kind!r}; got {config.kind!r}")
        self.config = config
        self.backend = get_backend(backend)
        xp = self.backend.xp
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64; got {self.dtype}")
        shapes = config.param_shapes()
        total = sum(math.prod(s) for s in shapes.values())
        self.flat = xp.zeros(total, dtype=self.dtype)
        self.grad_flat = xp.zeros(total, dtype=self.dtype)
        self.params: ParamDict = ParamDict(backend=self.backend)
        self.grads: ParamDict = ParamDict(backend=self.backend)
        offset = 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            self.params[name] = self.flat[offset:offset + size].reshape(shape)
            self.grads[name] = self.grad_flat[offset:offset + size].reshape(shape)
            offset += size
        self.init_params(_as_rng(rng))

    # -- parameters -----------------------------------------------------------
    def init_params(self, rng: np.random.Generator) -> None:
        """PyTorch's default for linear layers: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        for name, p in self.params.items():
            if name == "dec.log_var_x":
                p[...] = 0.0
                continue
            fan_in = self.params[name.replace(".b", ".W")].shape[0]
            bound = 1.0 / math.sqrt(fan_in)
            u = rng.random(p.shape, dtype=np.float64) * 2.0 - 1.0
            p[...] = self.backend.asarray((u * bound).astype(self.dtype))

    @property
    def num_params(self) -> int:
        return int(self.flat.size)

    def load_params(self, params: dict) -> None:
        """Copy ``params`` (name -> array) in, checking names and shapes first."""
        from .errors import CheckpointError

        mine = {k: tuple(v.shape) for k, v in self.params.items()}
        theirs = {k: tuple(np.shape(v)) for k, v in params.items()}
        if mine != theirs:
            missing = sorted(set(mine) - set(theirs))
            extra = sorted(set(theirs) - set(mine))
            wrong = sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k])
            detail = "; ".join(
                s for s in (
                    f"missing {missing}" if missing else "",
                    f"unexpected {extra}" if extra else "",
                    ", ".join(f"{k} is {theirs[k]} not {mine[k]}" for k in wrong),
                ) if s
            )
            raise CheckpointError(f"parameters do not match this model's architecture: {detail}")
        for k, v in params.items():
            # to the host explicitly (a device array refuses np.asarray), then onto ours
            self.params[k][...] = self.backend.asarray(self.backend.asnumpy(v), dtype=self.dtype)

    def astype(self, dtype) -> _MLPModel:
        """A copy of this model with parameters in ``dtype`` (float64 for gradient checks)."""
        other = type(self)(self.config, 0, dtype=dtype, backend=self.backend)
        other.load_params({k: self.backend.asnumpy(v) for k, v in self.params.items()})
        return other

    # -- input checks ---------------------------------------------------------
    def check_input(self, x) -> None:
        """Raise :class:`InputError` unless ``x`` is an (N, D) batch the model can read."""
        D = self.config.input_dim
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 2 or shape[1] != D:
            hint = " Flatten images with x.reshape(len(x), -1)." if shape and len(shape) > 2 else ""
            raise InputError(f"x must have shape (N, {D}); got {shape}.{hint}")
        if shape[0] == 0:
            raise InputError("x is an empty batch (N = 0)")
        if x.dtype != self.dtype:
            hint = " Scale pixels by 1/255." if x.dtype.kind in "ui" else ""
            raise InputError(
                f"x has dtype {x.dtype} but the model computes in {self.dtype};"
                f" convert with x.astype(np.{self.dtype}).{hint}"
            )
        xp = self.backend.xp
        if not bool(xp.isfinite(x).all()):
            raise InputError("x holds NaN or infinite values; clean the data first")
        if self.config.likelihood in LOGIT_LIKELIHOODS:
            lo, hi = float(x.min()), float(x.max())
            if lo < 0.0 or hi > 1.0:
                which = "a Bernoulli" if self.config.likelihood == "bernoulli" else (
                    "a continuous Bernoulli")
                raise InputError(
                    f"x must hold values in [0, 1] for {which} decoder; got min {lo:g},"
                    f" max {hi:g}. Scale pixels by 1/255."
                )

    def condition(self, y, n: int):
        """The one-hot label ``c`` (n, C) a conditional model reads, or None for another.

        Raises :class:`InputError` when a conditional model gets no labels, an
        unconditional one gets some, or ``y`` is not n integers in ``0 .. C - 1``.
        """
        C = self.config.num_classes
        if C == 0:
            if y is not None:
                raise InputError("this model is not conditional (num_classes = 0); call it "
                                 "without labels y, or train a conditional one")
            return None
        if y is None:
            raise InputError(f"this model is conditional on a label 0..{C - 1}: pass the "
                             f"labels y, one integer per row")
        xp = self.backend.xp
        y = xp.asarray(y)
        if y.shape != (n,) or y.dtype.kind not in "iu":
            raise InputError(f"y must be {n} integer labels, shape ({n},); got shape "
                             f"{y.shape}, dtype {y.dtype}")
        if n and (int(y.min()) < 0 or int(y.max()) >= C):
            raise InputError(f"labels y must lie in 0..{C - 1}; got min {int(y.min())}, max "
                             f"{int(y.max())}")
        return F.one_hot(y, C, self.dtype)

    def _check_noise(self, eps, n: int) -> None:
        K = self.config.latent_dim
        if getattr(eps, "shape", None) != (n, K):
            raise InputError(f"eps must have shape ({n}, {K}); got {getattr(eps, 'shape', None)}")
        if eps.dtype != self.dtype:
            raise InputError(f"eps has dtype {eps.dtype}; the model computes in {self.dtype}")

    # -- shared pieces --------------------------------------------------------
    def _encoder_hidden(self, x, c=None):
        """The encoder's hidden layers on ``x`` (or ``[x, c]``): the last activation, caches.

        Nothing upstream of the data and the label needs a gradient, so the
        concatenation has no backward here (the first layer skips ``dx``).
        """
        p = self.params
        act_forward = F.ACTIVATIONS[self.config.activation][0]
        h = x if c is None else F.concat_forward(x, c)[0]
        caches = []
        for i in range(1, len(self.config.hidden_dims) + 1):
            a, lin_cache = F.linear_forward(h, p[f"enc.W{i}"], p[f"enc.b{i}"])
            h, act_cache = act_forward(a)
            caches.append((lin_cache, act_cache))
        return h, caches

    def _encoder_hidden_backward(self, dh, caches) -> None:
        g = self.grads
        act_backward = F.ACTIVATIONS[self.config.activation][1]
        for i in range(len(caches), 0, -1):
            lin_cache, act_cache = caches[i - 1]
            da = act_backward(dh, act_cache)
            dh, g[f"enc.W{i}"][...], g[f"enc.b{i}"][...] = F.linear_backward(
                da, lin_cache, input_grad=i > 1  # nothing upstream of x needs a gradient
            )

    def decode(self, z, y=None):
        """Decoder forward: ``x_out`` (logits, or Gaussian means), shape (N, D).

        A conditional model needs the labels ``y`` to decode with.
        """
        return self._decode(z, self.condition(y, z.shape[0]))[0]

    def _decode(self, z, c=None):
        """Decoder forward from ``z`` (or ``[z, c]``): ``x_out`` and the cache."""
        p = self.params
        act_forward = F.ACTIVATIONS[self.config.activation][0]
        h, concat_cache = (z, None) if c is None else F.concat_forward(z, c)
        caches = []
        for i in range(1, len(self.config.hidden_dims) + 1):
            a, lin_cache = F.linear_forward(h, p[f"dec.W{i}"], p[f"dec.b{i}"])
            h, act_cache = act_forward(a)
            caches.append((lin_cache, act_cache))
        x_out, out_cache = F.linear_forward(h, p["dec.W_out"], p["dec.b_out"])
        return x_out, (caches, out_cache, concat_cache)

    def _decode_backward(self, dx_out, cache):
        """Decoder backward; fills the decoder's gradients and returns ``dz``."""
        g = self.grads
        caches, out_cache, concat_cache = cache
        dh, g["dec.W_out"][...], g["dec.b_out"][...] = F.linear_backward(dx_out, out_cache)
        act_backward = F.ACTIVATIONS[self.config.activation][1]
        for i in range(len(caches), 0, -1):
            lin_cache, act_cache = caches[i - 1]
            da = act_backward(dh, act_cache)
            dh, g[f"dec.W{i}"][...], g[f"dec.b{i}"][...] = F.linear_backward(da, lin_cache)
        if concat_cache is not None:
            # the first layer read [z, c]: z's gradient is its columns; the label's is dropped
            dh, _ = F.concat_backward(dh, concat_cache)
        return dh

    def log_var_x(self):
        """Gaussian decoder: the per-pixel log-variance (a parameter, or fixed).

        A learned log-variance is read through its floor,
        ``max(dec.log_var_x, 2 log gaussian_std_floor)``.
        """
        xp = self.backend.xp
        if "dec.log_var_x" in self.params:
            log_var_x = self.params["dec.log_var_x"]
            if self.config.gaussian_std_floor > 0:
                floor = 2.0 * math.log(self.config.gaussian_std_floor)
                log_var_x = xp.maximum(log_var_x, xp.asarray(floor, dtype=self.dtype))
            return log_var_x
        return xp.asarray(2.0 * math.log(self.config.gaussian_std), dtype=self.dtype)

    def reconstruction_nll(self, x_out, x):
        """-log p(x|z) per example, shape (N,), in nats."""
        if self.config.likelihood == "bernoulli":
            return losses.bernoulli_nll(x_out, x)
        if self.config.likelihood == "continuous_bernoulli":
            return losses.continuous_bernoulli_nll(x_out, x)
        return losses.gaussian_nll(x_out, x, self.log_var_x())

    def _reconstruction_backward(self, drec, x_out, x):
        if self.config.likelihood == "bernoulli":
            return losses.bernoulli_nll_backward(drec, x_out, x)
        if self.config.likelihood == "continuous_bernoulli":
            return losses.continuous_bernoulli_nll_backward(drec, x_out, x)
        log_var_x = self.log_var_x()
        dx_out, dlog_var_x = losses.gaussian_nll_backward(drec, x_out, x, log_var_x)
        if "dec.log_var_x" in self.grads:
            # below its floor the log-variance does not reach the loss: no gradient there
            free = log_var_x == self.params["dec.log_var_x"]
            self.grads["dec.log_var_x"][...] = dlog_var_x * free
        return dx_out

    def mean_image(self, x_out):
        """The mean of p(x|z): ``sigmoid(x_out)`` for Bernoulli, ``x_out`` for Gaussian.

        For the continuous Bernoulli it is :func:`losses.continuous_bernoulli_mean`,
        ``lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda))``, nearer 1/2 than
        ``lambda = sigmoid(x_out)``.
        """
        if self.config.likelihood == "bernoulli":
            return F.sigmoid_forward(x_out)[0]
        if self.config.likelihood == "continuous_bernoulli":
            return losses.continuous_bernoulli_mean(x_out)
        return x_out

    def _kl_weight(self, beta):
        """The KL weight of one step: ``beta`` if given (a schedule's), else the config's."""
        if beta is None:
            return self.config.beta
        if self.config.kind != "vae":
            raise ConfigError(f"an autoencoder has no KL term to weigh; got beta={beta!r}")
        beta = float(beta)
        if not (math.isfinite(beta) and beta >= 0):
            raise ConfigError(f"beta must be a finite number >= 0; got {beta!r}")
        return beta

    def loss_and_grads(self, x, eps=None, *, y=None, check: bool = True,
                       beta: float | None = None):
        """One forward and backward pass: ``(loss, terms, grads)``.

        ``grads`` is ``model.grads`` (name -> array), overwritten by each call.
        ``beta`` weighs the KL term for this step instead of ``config.beta`` (a KL
        warm-up passes its schedule's value; :mod:`vae_numpy.objectives`).

        With numba on (backend ``numpy``) and a float32 Bernoulli model, this runs
        :class:`vae_numpy.fused.FusedStep`: the same arithmetic as
        :meth:`forward` then :meth:`backward`, in preallocated buffers with fused
        kernels. Everything else takes the readable path below, a conditional model
        (labels ``y``) included.
        """
        if self.backend.use_numba and isinstance(x, np.ndarray) and y is None:
            from .fused import fused_step_for

            step = fused_step_for(self)
            if step is not None and x.dtype == self.dtype:
                return step(x, eps, check=check, beta=beta)
        loss, terms, cache = self.forward(x, eps, y=y, check=check, beta=beta)
        return loss, terms, self.backward(cache)


class Autoencoder(_MLPModel):
    """A deterministic autoencoder: ``z = encoder(x)``, ``x_out = decoder(z)``.

    >>> ae = Autoencoder(latent_dim=2, rng=0)
    """

    kind = "ae"

    def encode(self, x, y=None):
        """The code ``z`` of each input, shape (N, K) (labels ``y`` if conditional)."""
        h, _ = self._encoder_hidden(x, self.condition(y, x.shape[0]))
        return F.linear_forward(h, self.params["enc.W_z"], self.params["enc.b_z"])[0]

    def noise(self, n: int, rng) -> None:
        """An autoencoder draws no noise; kept so training loops treat both models alike."""
        return None

    def forward(self, x, eps=None, *, y=None, check: bool = True, beta: float | None = None):
        """Loss ``mean(rec)``, the terms as floats, and the cache for :meth:`backward`."""
        self._kl_weight(beta)                 # an autoencoder takes no KL weight: refuse one
        if check:
            self.check_input(x)
        c = self.condition(y, x.shape[0])
        h, enc_caches = self._encoder_hidden(x, c)
        z, z_cache = F.linear_forward(h, self.params["enc.W_z"], self.params["enc.b_z"])
        x_out, dec_cache = self._decode(z, c)
        rec = self.reconstruction_nll(x_out, x)
        loss = rec.mean()
        terms = {"loss": float(loss), "rec": float(loss), "kl": 0.0}
        return loss, terms, (x, enc_caches, z_cache, x_out, dec_cache)

    def backward(self, cache):
        """Gradients of the loss with respect to every parameter (``model.grads``)."""
        x, enc_caches, z_cache, x_out, dec_cache = cache
        xp = self.backend.xp
        n = x.shape[0]
        drec = xp.full(n, 1.0 / n, dtype=self.dtype)
        dx_out = self._reconstruction_backward(drec, x_out, x)
        dz = self._decode_backward(dx_out, dec_cache)
        dh, self.grads["enc.W_z"][...], self.grads["enc.b_z"][...] = F.linear_backward(dz, z_cache)
        self._encoder_hidden_backward(dh, enc_caches)
        return self.grads


class VAE(_MLPModel):
    """A variational autoencoder with a Gaussian encoder q(z|x) and prior N(0, I).

    >>> vae = VAE(latent_dim=20, rng=0)          # 784-400-20-400-784, Bernoulli
    >>> eps = vae.noise(128, np.random.default_rng(1))
    >>> loss, terms, grads = vae.loss_and_grads(x, eps)   # doctest: +SKIP
    """

    kind = "vae"

    def encode(self, x, y=None):
        """Mean and log-variance of q(z|x) (q(z|x, y) if conditional), each (N, K)."""
        mu, log_var, _ = self._encode(x, self.condition(y, x.shape[0]))
        return mu, log_var

    def _encode(self, x, c=None):
        """``mu, log_var`` and the cache for :meth:`_encode_backward` (``c``: one-hot label)."""
        p = self.params
        h, enc_caches = self._encoder_hidden(x, c)
        mu, mu_cache = F.linear_forward(h, p["enc.W_mu"], p["enc.b_mu"])
        log_var, log_var_cache = F.linear_forward(h, p["enc.W_log_var"], p["enc.b_log_var"])
        return mu, log_var, (enc_caches, mu_cache, log_var_cache)

    def _encode_backward(self, dmu, dlog_var, cache) -> None:
        """Encoder backward from ``dmu`` and ``dlog_var``; fills the encoder's gradients."""
        g = self.grads
        enc_caches, mu_cache, log_var_cache = cache
        # h feeds both heads, so its gradient is the sum of what each head sends back
        dh_mu, g["enc.W_mu"][...], g["enc.b_mu"][...] = F.linear_backward(dmu, mu_cache)
        dh_lv, g["enc.W_log_var"][...], g["enc.b_log_var"][...] = F.linear_backward(
            dlog_var, log_var_cache
        )
        self._encoder_hidden_backward(dh_mu + dh_lv, enc_caches)

    def noise(self, n: int, rng: np.random.Generator):
        """Standard normal ``eps`` of shape (n, K) in the model's dtype, on its device."""
        eps = rng.standard_normal((n, self.config.latent_dim), dtype=self.dtype)
        return self.backend.asarray(eps)

    def forward(self, x, eps, *, y=None, check: bool = True, beta: float | None = None):
        """The negative ELBO (with ``beta``) averaged over the batch.

        Parameters
        ----------
        x : (N, D) array in the model's dtype
        eps : (N, K) array
            The noise of the reparameterization; pass it in so a step is
            deterministic (``model.noise(N, rng)`` draws it).
        y : (N,) integer array, optional
            The labels, for a conditional model (``num_classes > 0``) only.
        beta : float, optional
            The KL weight of this step; ``config.beta`` when not given.

        Returns
        -------
        loss : 0-d array
            ``mean(rec + beta * kl)``.
        terms : dict
            ``loss``, ``rec`` and ``kl`` as Python floats (batch means).
        cache : tuple
            Everything :meth:`backward` needs.
        """
        if check:
            self.check_input(x)
            self._check_noise(eps, x.shape[0])
        c = self.condition(y, x.shape[0])
        mu, log_var, enc_cache = self._encode(x, c)
        z, z_cache = F.reparameterize_forward(mu, log_var, eps)
        x_out, dec_cache = self._decode(z, c)
        rec = self.reconstruction_nll(x_out, x)
        kl = losses.kl_divergence(mu, log_var)
        beta = self._kl_weight(beta)
        loss = (rec + beta * kl).mean()
        terms = {"loss": float(loss), "rec": float(rec.mean()), "kl": float(kl.mean())}
        cache = (x, mu, log_var, enc_cache, z_cache, x_out, dec_cache, beta)
        return loss, terms, cache

    def backward(self, cache):
        """Gradients of the loss with respect to every parameter, in reverse order.

        Returns ``model.grads`` (name -> array), overwritten by each call.
        """
        x, mu, log_var, enc_cache, z_cache, x_out, dec_cache, beta = cache
        xp = self.backend.xp
        n = x.shape[0]
        # loss = mean(rec + beta * kl): each example's terms get weight 1/n and beta/n
        drec = xp.full(n, 1.0 / n, dtype=self.dtype)
        dkl = xp.full(n, beta / n, dtype=self.dtype)
        dx_out = self._reconstruction_backward(drec, x_out, x)
        dz = self._decode_backward(dx_out, dec_cache)
        # mu and log_var reach the loss twice, through z and through the KL: add both paths
        dmu, dlog_var = F.reparameterize_backward(dz, z_cache)
        dmu_kl, dlog_var_kl = losses.kl_divergence_backward(dkl, mu, log_var)
        dmu = dmu + dmu_kl
        dlog_var = dlog_var + dlog_var_kl
        self._encode_backward(dmu, dlog_var, enc_cache)
        return self.grads

    def sample(self, n: int, rng: np.random.Generator, y=None):
        """Decode ``n`` draws from the prior; returns the mean images, (n, D).

        A conditional model draws the digits ``y``: one label for all n, or n labels.
        """
        z = self.noise(n, rng)
        if y is not None and np.ndim(y) == 0:
            y = np.full(n, y)            # one digit for all n (condition checks its type)
        return self.mean_image(self.decode(z, y))

    def reconstruct(self, x, y=None):
        """Decode each input's mean code ``mu``; returns the mean images, (N, D)."""
        mu, _ = self.encode(x, y)
        return self.mean_image(self.decode(mu, y))


def make_model(config: ModelConfig, rng=0, **kwargs) -> _MLPModel:
    """The model class that ``config.kind`` names, built and initialized."""
    cls = VAE if config.kind == "vae" else Autoencoder
    return cls(config, rng, **kwargs)
