"""The training loop: minibatches, one optimizer step each, a history per epoch.

:func:`fit` trains a model in place and returns its :class:`History`. It shows a
progress bar (tqdm, notebook-aware), evaluates held-out data after each epoch,
calls callbacks, writes checkpoints, resumes from one, and stops with a clear
error if a step produces a NaN or an infinity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import load_into, save_checkpoint
from .data import dynamic_binarize, minibatches
from .errors import ConfigError, NonFiniteError
from .evaluate import negative_elbo, progress_bar
from .optim import SGD, Adam

HISTORY_KEYS = ("epoch", "beta", "train_loss", "train_rec", "train_kl", "test_loss",
                "test_rec", "test_kl", "seconds")


@dataclass
class History:
    """Per-epoch records: ``history["test_loss"]`` is a list with one float per epoch.

    ``train_*`` are means over the epoch's minibatches (the model changing as it
    goes): ``train_loss`` is the objective the epoch minimised, ``train_kl`` the KL
    itself. ``test_*`` are measured after the epoch (NaN when no test set was given):
    the negative ELBO with the model's beta, whatever the training objective.
    ``beta`` is the KL weight every step of the epoch used (a warm-up's schedule;
    NaN for an objective without one, such as the IWAE bound, or an autoencoder).
    """

    records: dict[str, list] = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})

    def __getitem__(self, key: str) -> list:
        return self.records[key]

    def append(self, **row) -> None:
        for key in HISTORY_KEYS:
            self.records[key].append(row.get(key, math.nan))

    def __len__(self) -> int:
        return len(self.records["epoch"])

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.records.items()}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """Inverse of :meth:`to_dict`; a key an older history lacks is NaN in every epoch."""
        h = cls()
        n = len(d.get("epoch", []))
        for key in HISTORY_KEYS:
            h.records[key] = list(d[key]) if key in d else [math.nan] * n
        return h


Callback = Callable[[int, object, History], None]


def make_optimizer(model, name: str = "adam", lr: float = 1e-3, **kwargs):
    """``Adam`` or ``SGD`` over ``model.params``; Adam is fused when the backend uses numba."""
    if name == "adam":
        return Adam(model.params, lr=lr, fused=None if model.backend.use_numba else False,
                    **kwargs)
    if name == "sgd":
        return SGD(model.params, lr=lr, **kwargs)
    raise ConfigError(f"optimizer must be 'adam' or 'sgd'; got {name!r}")


def fit(model, x, *, epochs: int = 10, batch_size: int = 128, optimizer=None, lr: float = 1e-3,
        rng=0, x_test=None, binarize: str | None = None, callbacks: Sequence[Callback] = (),
        progress: bool = True, checkpoint: str | Path | None = None,
        resume: str | Path | None = None, history: History | None = None,
        log: Callable[[str], None] | None = None, objective=None,
        lr_schedule: Callable[[int], float] | None = None,
        data_info: dict | None = None, y=None, y_test=None) -> History:
    """Train ``model`` in place on ``x`` for ``epochs`` epochs.

    Parameters
    ----------
    model : VAE or Autoencoder
    x : (N, D) array in the model's dtype
        Training data. With a Bernoulli decoder its values must lie in [0, 1].
    epochs : int
        The epoch to train up to (counted from 0, so resuming from a checkpoint at
        epoch k trains epochs k+1 .. ``epochs``).
    batch_size : int
    optimizer : Optimizer, optional
        Default: Adam with learning rate ``lr``.
    rng : int or numpy.random.Generator
        Drives shuffling, the reparameterization noise and dynamic binarization.
    x_test : (M, D) array, optional
        Held-out data, evaluated after every epoch (:func:`.evaluate.negative_elbo`).
    binarize : None, "none" or "dynamic"
        ``"dynamic"`` redraws binary pixels from ``x`` (grey levels, the
        probabilities) for every minibatch, and the encoder sees the binary image.
        ``static`` and ``threshold`` targets are made once, when the data are
        loaded (:func:`vae_numpy.data.load_mnist`), so they are not options here.
    callbacks : sequence of callables ``f(epoch, model, history)``
        Called after each epoch (after evaluation).
    progress : bool
        Show a progress bar.
    checkpoint : path, optional
        Write a checkpoint here after every epoch (atomically).
    resume : path, optional
        Continue from this checkpoint: parameters, optimizer state, RNG state,
        epoch and history. With the same data and settings, training to n in two
        runs gives the same parameters, bit for bit, as one run to n.
    history : History, optional
        Append to this history instead of a new one.
    log : callable, optional
        Receives one line per epoch (the CLI passes ``print``).
    objective : optional
        What a step minimises (:mod:`vae_numpy.objectives`): by default the model's
        own loss (:class:`~vae_numpy.objectives.ELBO`); ``ELBO(kl_warmup=W)`` anneals
        the KL weight over W epochs (at most ``epochs``), ``FreeBits(lam)`` floors each
        unit's KL, ``IWAE(k)`` is the importance-weighted bound. An objective with a
        ``beta(model, epoch)`` method sets each epoch's KL weight, recorded in the
        history. Checkpoints record its ``settings()``, and resuming with other
        settings is refused.
    lr_schedule : callable, optional
        ``lr_schedule(epoch)`` is the learning rate for that epoch (from 1); set on
        the optimizer before the epoch starts.
    data_info : dict, optional
        How the data were made (dataset, protocol, seed), stored in checkpoints so
        that evaluation can use the matching test targets.
    y, y_test : (N,) and (M,) integer arrays, optional
        The labels of ``x`` and ``x_test``, for a conditional model only (required
        there): each minibatch's labels go with its images.

    Returns
    -------
    History
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ConfigError(f"epochs must be an integer >= 0; got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    if binarize not in (None, "none", "dynamic"):
        raise ConfigError(f"fit(binarize=...) must be None, 'none' or 'dynamic'; got {binarize!r}"
                          " (static and threshold targets are made by load_mnist)")
    if objective is None:
        from .objectives import ELBO

        objective = ELBO()
    if objective.name != "elbo" and model.config.kind != "vae":
        raise ConfigError(f"the {objective.name} objective needs a VAE; got an autoencoder")
    if hasattr(objective, "check"):
        objective.check(model, epochs)
    settings = _objective_settings(objective)
    schedule = getattr(objective, "beta", None)
    xp = model.backend.xp
    x = xp.asarray(x)
    model.check_input(x)  # once for the whole set, not every step
    model.condition(y, x.shape[0])        # labels if and only if the model is conditional
    y = None if y is None else xp.asarray(y)
    if x_test is not None:
        x_test = xp.asarray(x_test)
        model.check_input(x_test)
        model.condition(y_test, x_test.shape[0])
    if optimizer is None:
        optimizer = make_optimizer(model, "adam", lr)
    history = history if history is not None else History()
    start_epoch = 0
    # The checkpoint that divergence leaves behind: (path, epoch) once this run has
    # written one, or the file it resumed from when that is the same file.
    kept = None
    if resume is not None:
        ckpt = load_into(model, resume)
        _check_resumed_objective(resume, ckpt.objective, settings)
        optimizer.load_state_dict(ckpt.optimizer_state)
        if ckpt.rng_state is not None:
            rng.bit_generator.state = ckpt.rng_state
        start_epoch = ckpt.epoch
        history = History.from_dict(ckpt.history)
        if checkpoint is not None and _same_file(checkpoint, resume):
            kept = (checkpoint, ckpt.epoch)
    resumed_from = (resume, start_epoch) if resume is not None else None

    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    for epoch in range(start_epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        if lr_schedule is not None:
            optimizer.lr = float(lr_schedule(epoch))
        # the KL weight of the epoch (from the epoch number alone, so a resume agrees)
        beta = schedule(model, epoch) if schedule is not None else None
        step_kw = {} if beta is None else {"beta": beta}
        sums = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
        bar = progress_bar(steps_per_epoch, f"epoch {epoch}/{epochs}", progress, 0.5)
        for step, idx in enumerate(minibatches(n, batch_size, rng), start=1):
            rows = xp.asarray(idx) if xp is not np else idx
            xb = x[rows]
            if y is not None:
                step_kw["y"] = y[rows]
            if binarize == "dynamic":
                xb = xp.asarray(dynamic_binarize(model.backend.asnumpy(xb), rng))
            eps = objective.noise(model, xb.shape[0], rng)
            _, terms, grads = objective.loss_and_grads(model, xb, eps, **step_kw)
            if not math.isfinite(terms["loss"]):
                raise NonFiniteError(_diverged_message(epoch, step, terms, optimizer, checkpoint,
                                                       kept, resumed_from))
            optimizer.step(grads)
            for key in sums:
                sums[key] += terms[key] * xb.shape[0]
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{terms['loss']:.2f}")
        if bar is not None:
            bar.close()
        if not bool(xp.isfinite(model.flat).all()):
            raise NonFiniteError(_diverged_message(epoch, steps_per_epoch, {"loss": math.nan},
                                                   optimizer, checkpoint, kept, resumed_from))
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "seconds": seconds, "beta": math.nan if beta is None else beta}
        row.update({f"train_{k}": v / n for k, v in sums.items()})
        if x_test is not None:
            row.update({f"test_{k}": v
                        for k, v in negative_elbo(model, x_test, y=y_test).items()})
        history.append(**row)
        if log is not None:
            log(_epoch_line(row, model, show_beta=bool(getattr(objective, "kl_warmup", 0))))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer=optimizer, epoch=epoch, rng=rng,
                            history=history.to_dict(), data=data_info, objective=settings)
            kept = (checkpoint, epoch)
        for callback in callbacks:
            callback(epoch, model, history)
    return history


def _objective_settings(objective) -> dict:
    """What a checkpoint records of ``objective``: its ``settings()``, or name and k."""
    if hasattr(objective, "settings"):
        return dict(objective.settings())
    return {"name": objective.name, "k": objective.k}


def _check_resumed_objective(path, done: dict, settings: dict) -> None:
    """Refuse to continue a checkpoint with another objective (or warm-up, or floor)."""
    from .objectives import same_settings

    if done and not same_settings(done, settings):
        raise ConfigError(f"{path} was trained with the objective {done}; this run asks for "
                          f"{settings}: give the same objective to continue it")


def _epoch_line(row: dict, model, show_beta: bool = False) -> str:
    # under a warm-up the train loss is the epoch's beta-weighted objective: say which beta
    weight = f", beta {row['beta']:.3g}" if show_beta else ""
    line = (f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.3f} "
            f"(rec {row['train_rec']:.3f}, kl {row['train_kl']:.3f}{weight})")
    if "test_loss" in row:
        from .evaluate import objective_name

        line += (f"  test {objective_name(model)} {row['test_loss']:.3f} "
                 f"(rec {row['test_rec']:.3f}, kl {row['test_kl']:.3f})")
    return line + f"  {row['seconds']:.1f}s"


def _same_file(a, b) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _diverged_message(epoch, step, terms, optimizer, checkpoint, kept=None,
                      resumed_from=None) -> str:
    """The one-line error of a diverged run.

    ``kept`` is ``(path, epoch)`` of the checkpoint file that holds the last good
    model (one this run wrote, or the file it resumed from and would have
    overwritten), or None; ``resumed_from`` is ``(path, epoch)`` of a resume.
    """
    where = f"training diverged at epoch {epoch}, step {step}: the loss is {terms['loss']}"
    hint = (f". Try a smaller learning rate (it is {optimizer.lr:g}) and check that the data "
            "lie in [0, 1]")
    if kept is not None:
        saved = f"; the last good checkpoint, {kept[0]} (epoch {kept[1]}), is intact"
    elif checkpoint is None:
        saved = ""
    elif resumed_from is not None:
        saved = (f"; no checkpoint was written to {checkpoint} (the one it resumed from, "
                 f"{resumed_from[0]}, epoch {resumed_from[1]}, is unchanged)")
    else:
        saved = (f"; no checkpoint was written: it diverged in epoch {epoch}, before the first "
                 f"save to {checkpoint}")
    return where + hint + saved + "."



def model_cache_dir() -> Path:
    """Where :func:`train_cached` keeps trained models: ``$VAE_NUMPY_CACHE`` or the user cache."""
    import os

    root = os.environ.get("VAE_NUMPY_CACHE")
    if root:
        return Path(root).expanduser().absolute() / "models"
    from .data import _user_cache_dir

    return _user_cache_dir() / "models"


def _source_digest() -> str:
    """A hash of the library's code that shapes a trained model (a change retrains)."""
    import hashlib

    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("functional.py", "losses.py", "model.py", "optim.py", "kernels.py", "fused.py",
                 "backend.py", "train.py", "evaluate.py", "data.py", "handwriting.py",
                 "objectives.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def train_cached(config, *, dataset: str = "mnist", epochs: int = 10, batch_size: int = 128,
                 lr: float = 1e-3, seed: int = 0, limit: int | None = None, progress: bool = True,
                 backend=None, objective=None, binarize: str | None = None,
                 digits: Sequence[int] | None = None):
    """Train a model on MNIST (or the handwriting set), or load it if trained before.

    Chapters that need a trained model call this: the first call trains (seeded,
    so deterministic on a given machine and thread count) and stores a checkpoint
    in :func:`model_cache_dir`; later calls with the same arguments, and the same
    library code, load it. Nothing is written into the repository.

    Parameters
    ----------
    config : ModelConfig
    dataset : {"mnist", "handwriting"}
        MNIST with pixel values (grey levels) as targets, or 12,000 synthetic
        handwriting images (10,000 to train, the rest held out).
    epochs, batch_size, lr, seed : training settings (Adam).
    limit : int, optional
        Train on the first ``limit`` examples only.
    objective : optional
        What training minimises (:func:`fit`'s ``objective``; the ELBO by default). Its
        ``settings()`` (a warm-up's length, a free-bits floor, k) are part of the key.
    binarize : None or "dynamic"
        None: grey levels as targets. ``"dynamic"``: the protocol of the IWAE paper
        (:func:`vae_numpy.data.load_mnist`): a fresh Bernoulli draw of every training
        pixel for every minibatch (``fit(..., binarize="dynamic")``), and the test
        digits of the history binarized once with the fixed seed; the checkpoint
        records it. Part of the key.
    digits : sequence of int, optional
        MNIST only: train (and evaluate the history) on the images of these classes
        alone, say every digit but 9 to hold a class out for anomaly detection. The
        ``limit`` applies after the selection. Part of the key.

    A conditional configuration (``num_classes > 0``) trains on the images with
    their labels (MNIST: the digit).

    Returns
    -------
    model : VAE or Autoencoder
    history : History
    """
    import hashlib
    import json

    from .backend import get_backend
    from .checkpoint import load_checkpoint
    from .model import make_model
    from .objectives import ELBO

    backend = get_backend(backend)
    objective = ELBO() if objective is None else objective
    if binarize not in (None, "dynamic"):
        raise ConfigError(f"train_cached(binarize=...) must be None (grey levels) or "
                          f"'dynamic'; got {binarize!r}")
    digits = _check_digits(digits, dataset)
    key = json.dumps({"config": json.loads(config.to_json()), "dataset": dataset,
                      "objective": _objective_settings(objective),
                      "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                      "limit": limit, "binarize": binarize, "backend": backend.name,
                      "digits": digits,
                      "code": _source_digest()},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = model_cache_dir() / f"{config.kind}-{dataset}-{digest}.npz"
    if path.is_file():
        try:
            ckpt = load_checkpoint(path, backend=backend)
            return ckpt.model, History.from_dict(ckpt.history)
        except Exception:  # a damaged cache entry is retrained, never trusted
            path.unlink(missing_ok=True)
    (x, y), (x_test, y_test) = _cached_dataset(dataset, digits)
    if config.num_classes and y is None:
        raise ConfigError(f"a conditional model needs labels; the {dataset!r} set has none "
                          "(use dataset='mnist')")
    if limit is not None:
        x, y = x[:limit], None if y is None else y[:limit]
    labels = {"y": y, "y_test": y_test} if config.num_classes else {}
    data_info = None
    if binarize == "dynamic":
        from .data import DYNAMIC_TEST_SEED, binarize_split

        x_test = binarize_split(x_test, "dynamic", "test")
        data_info = {"dataset": dataset, "binarize": "dynamic",
                     "test_seed": DYNAMIC_TEST_SEED, "seed": seed}
    model = make_model(config, np.random.default_rng(seed), backend=backend)
    history = fit(model, x, epochs=epochs, batch_size=batch_size, lr=lr, rng=seed,
                  x_test=x_test, progress=progress, objective=objective, binarize=binarize,
                  data_info=data_info, **labels)
    save_checkpoint(path, model, epoch=epochs, history=history.to_dict(), data=data_info,
                    objective=_objective_settings(objective))
    return model, history


def _check_digits(digits, dataset: str) -> list[int] | None:
    """``digits`` as a sorted list of distinct classes 0-9 (None: every class)."""
    if digits is None:
        return None
    if dataset != "mnist":
        raise ConfigError(f"digits=... selects MNIST classes; the {dataset!r} set has none")
    try:
        chosen = sorted({int(d) for d in digits})
    except (TypeError, ValueError):
        raise ConfigError(f"digits must be a sequence of classes 0-9; got {digits!r}") from None
    if not chosen or chosen[0] < 0 or chosen[-1] > 9:
        raise ConfigError(f"digits must name at least one class among 0-9; got {digits!r}")
    return chosen


def _cached_dataset(dataset: str, digits: list[int] | None = None):
    from .data import load_mnist
    from .handwriting import make_handwriting

    """``(x, y), (x_test, y_test)``: images and labels (None where a set has none)."""
    if dataset == "mnist":
        train, test = load_mnist("train"), load_mnist("test")
        if digits is None:
            return (train.x, train.y), (test.x, test.y)
        keep, keep_test = np.isin(train.y, digits), np.isin(test.y, digits)
        return (train.x[keep], train.y[keep]), (test.x[keep_test], test.y[keep_test])
    if dataset == "handwriting":
        ds, _ = make_handwriting(12000, np.random.default_rng(0))
        return (ds.x[:10000], None), (ds.x[10000:], None)
    raise ConfigError(f"dataset must be 'mnist' or 'handwriting'; got {dataset!r}")
