"""Command line: ``python -m vae_numpy train | evaluate | sample | bench``.

Run ``python -m vae_numpy COMMAND --help`` for each command's options. Any bad
input (a file, a setting, data out of range) ends the program with a one-line
``error: ...`` message on stderr and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from .errors import CheckpointError, InputError, VAEError

DATASETS = ("mnist", "handwriting")
HANDWRITING_TRAIN, HANDWRITING_TOTAL = 10000, 12000  # the first 10,000 train, the rest test
DEFAULT_IWAE_K = 5  # the IWAE paper's k = 5 row (``reproduce iwae``)
MNIST_CLASSES = 10  # train --conditional: the digits 0-9


# -- checking arguments --------------------------------------------------------------
def _at_least(flag: str, value, minimum: int) -> None:
    if value < minimum:
        raise InputError(f"{flag} must be >= {minimum}; got {value}")


def _finite_positive(flag: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InputError(f"{flag} must be a finite number {'>= 0' if allow_zero else '> 0'}; "
                         f"got {value}")


def _read_npy(text: str, flag: str, *, min_rows: int = 1) -> np.ndarray:
    """The (N, D) float32 array in a ``.npy`` file, or a one-line error saying what is wrong."""
    path = Path(text)
    if path.suffix != ".npy":
        raise InputError(f"{flag} {text}: expected a .npy file of shape (N, D), as np.save "
                         "writes it")
    if not path.is_file():
        raise InputError(f"{flag} {text}: no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{flag} {text}: not a readable .npy array ({err}); write it with "
                         "np.save(path, x)") from err
    if not isinstance(x, np.ndarray):  # an .npz archive named .npy
        x.close()
        raise InputError(f"{flag} {text} is an .npz archive (a checkpoint?), not a .npy array; "
                         "write the data with np.save(path, x)")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{flag} {text} holds values of dtype {x.dtype}; expected numbers "
                         "(pixels as floats)")
    if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
        hint = " Flatten images with x.reshape(len(x), -1)." if x.ndim > 2 else ""
        raise InputError(f"{flag} {text}: expected an array of shape (N, D) with N >= {min_rows}"
                         f"; got shape {x.shape}.{hint}")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{flag} {text} holds {int(bad.sum())} NaN or infinite values (the "
                         f"first at row {row}, column {col}); clean the data first")
    return x


def _check_unit_interval(x: np.ndarray, what: str, why: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{what} must hold values in [0, 1] {why}; got min {lo:g}, max {hi:g}."
                         " Scale pixels by 1/255.")


def _image_shape(d: int) -> tuple[int, int]:
    side = int(round(np.sqrt(d)))
    return (side, side) if side * side == d else (1, d)


def _protocol_words(protocol: str, *, seed=None, test_seed=None, training: bool) -> str:
    """How the targets were made, in words (for the training or the test set)."""
    if protocol == "none":
        return "grey levels (no binarization)"
    if protocol == "threshold":
        return "thresholded at 0.5"
    if protocol == "static":
        return f"static binarization (one draw, seed {seed})"
    if training:
        return (f"dynamic binarization (a fresh draw each minibatch; the test set drawn once, "
                f"seed {test_seed})")
    return f"dynamic binarization (one draw, seed {test_seed})"


# -- train -----------------------------------------------------------------------------
def _check_out_folder(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {text} is a file; --out names a folder for checkpoint.npz "
                         "and the figures (made if missing), so give a folder path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out {text}: {parent} is a file, so no folder can be made "
                                 "there; give another --out")
            break
    if (out / "checkpoint.npz").is_dir():
        raise InputError(f"--out {text}: {out / 'checkpoint.npz'} is a folder, so the "
                         "checkpoint cannot be written; give another --out")
    return out


def _check_not_overwriting(args, out: Path) -> None:
    """Refuse to train over a run in --out, unless it is the one resumed or --overwrite."""
    ckpt = out / "checkpoint.npz"
    if not ckpt.exists() or args.overwrite:
        return
    if args.resume is not None and Path(args.resume).resolve() == ckpt.resolve():
        return
    raise InputError(f"--out {args.out} already holds a run ({ckpt}); pass --resume {ckpt} "
                     "to continue it, --overwrite to replace it, or another --out")


def _check_train_args(args):
    """Every check that needs no data; returns (protocol, static seed, objective)."""
    from . import data
    from .model import GAUSSIAN_STD_FLOOR, ModelConfig
    from .objectives import ELBO, IWAE, FreeBits

    protocol = data.check_protocol(args.binarize)
    if args.binarize_seed is not None:
        if protocol != "static":
            raise InputError(f"--binarize-seed seeds the static draw; --binarize {protocol} does "
                             "not use it (give --binarize static, or leave --binarize-seed out)")
        _at_least("--binarize-seed", args.binarize_seed, 0)
    bseed = data.STATIC_SEED if args.binarize_seed is None else args.binarize_seed
    _at_least("--epochs", args.epochs, 1)
    _at_least("--batch-size", args.batch_size, 1)
    _at_least("--limit", args.limit, 0)
    _at_least("--seed", args.seed, 0)
    _finite_positive("--beta", args.beta, allow_zero=True)
    _at_least("--kl-warmup", args.kl_warmup, 0)
    _finite_positive("--free-bits", args.free_bits, allow_zero=True)
    likelihood = args.likelihood.replace("-", "_")     # the config's name of it
    for flag, value, what in (("--kl-warmup", args.kl_warmup, "anneal"),
                              ("--free-bits", args.free_bits, "floor")):
        if not value:
            continue
        if args.model != "vae":
            raise InputError(f"{flag} needs a VAE (--model vae): an autoencoder has no KL term "
                             f"to {what}")
        if args.objective == "iwae":
            raise InputError(f"{flag} acts on the ELBO's KL term; the IWAE objective has none "
                             f"(leave {flag} out with --objective iwae)")
    if args.kl_warmup:
        if args.kl_warmup > args.epochs:
            raise InputError(f"--kl-warmup {args.kl_warmup} is longer than the run (--epochs "
                             f"{args.epochs}): beta would end at "
                             f"{args.beta * args.epochs / args.kl_warmup:.3g}, short of "
                             f"{args.beta:g}; give --kl-warmup {args.epochs} or less, or more "
                             "--epochs")
        if args.beta == 0:
            raise InputError("--kl-warmup ramps the KL weight from 0 up to --beta; with --beta 0 "
                             "there is nothing to ramp (give --beta > 0, or leave --kl-warmup "
                             "out)")
    if likelihood == "continuous_bernoulli" and args.binarize != "none":
        raise InputError(f"--likelihood continuous-bernoulli is a density of grey levels in "
                         f"[0, 1]; binary targets (--binarize {args.binarize}) are what "
                         "--likelihood bernoulli models: give --binarize none, or --likelihood "
                         "bernoulli")
    if args.objective == "iwae":
        if args.model != "vae":
            raise InputError("--objective iwae needs a VAE (--model vae); an autoencoder has no "
                             "q(z|x) to draw importance samples from")
        if args.beta != 1.0:
            raise InputError(f"--beta {args.beta:g}: the IWAE objective has no KL weight (it "
                             "bounds log p(x)); leave --beta out with --objective iwae")
        k = DEFAULT_IWAE_K if args.iw_k is None else args.iw_k
        _at_least("--iw-k", k, 1)
        objective = IWAE(k)
    else:
        if args.iw_k is not None:
            raise InputError("--iw-k is the k of --objective iwae; the ELBO takes no k (add "
                             "--objective iwae, or leave --iw-k out)")
        objective = (FreeBits(args.free_bits, kl_warmup=args.kl_warmup) if args.free_bits
                     else ELBO(kl_warmup=args.kl_warmup))
    if args.likelihood != "gaussian":
        for flag, value in (("--gaussian-std", args.gaussian_std),
                            ("--gaussian-std-floor", args.gaussian_std_floor)):
            if value is not None:
                raise InputError(f"{flag} is only used with --likelihood gaussian; got "
                                 f"--likelihood {args.likelihood}")
    if args.gaussian_std is not None:
        _finite_positive("--gaussian-std", args.gaussian_std)
        if args.gaussian_std_floor is not None:
            raise InputError("--gaussian-std-floor bounds a learned variance; with a fixed "
                             "--gaussian-std there is none to bound (give one of the two)")
    floor = GAUSSIAN_STD_FLOOR if args.gaussian_std_floor is None else args.gaussian_std_floor
    _finite_positive("--gaussian-std-floor", floor, allow_zero=True)
    if args.conditional and args.dataset != "mnist":
        raise InputError(f"--conditional reads each image's label; --dataset {args.dataset} has "
                         "none (give --dataset mnist, or leave --conditional out)")
    settings = dict(kind=args.model, hidden_dims=tuple(args.hidden), latent_dim=args.latent_dim,
                    likelihood=likelihood, beta=args.beta, activation=args.activation,
                    gaussian_std=args.gaussian_std, gaussian_std_floor=floor,
                    num_classes=MNIST_CLASSES if args.conditional else 0)
    ModelConfig(input_dim=1, **settings)  # the settings' own errors, before any data is read
    return protocol, bseed, objective, settings


def _check_resume(args, protocol, bseed, objective):
    """Read --resume and check it can be continued by this command (before any data)."""
    from .checkpoint import load_checkpoint
    from .objectives import same_settings, settings_words

    if args.resume is None:
        return
    ckpt = load_checkpoint(args.resume, backend="numpy-ref")
    if args.epochs <= ckpt.epoch:
        raise InputError(f"--resume {args.resume} has trained {ckpt.epoch} epochs already, so "
                         f"--epochs {args.epochs} leaves nothing to train; --epochs counts from "
                         f"the start: give more than {ckpt.epoch}")
    info = ckpt.data or {}
    was = info.get("binarize")
    if was is not None and was != protocol:
        raise InputError(f"--resume {args.resume} was trained with --binarize {was}; this run "
                         f"asks for --binarize {protocol}: give --binarize {was} to continue it")
    if was == "static" and info.get("seed") not in (None, bseed):
        raise InputError(f"--resume {args.resume} was trained on the static draw with seed "
                         f"{info['seed']}; give --binarize-seed {info['seed']} to continue it")
    dataset = info.get("dataset")
    if dataset is not None and dataset != args.dataset and (
            dataset in DATASETS or args.dataset in DATASETS):
        raise InputError(f"--resume {args.resume} was trained on {dataset}; this run asks for "
                         f"--dataset {args.dataset}: give --dataset {dataset} to continue it")
    done = ckpt.objective or {}
    if done.get("name") and not same_settings(done, objective.settings()):
        raise InputError(f"--resume {args.resume} was trained with {settings_words(done)}; this "
                         f"run asks for {settings_words(objective.settings())}: give the same "
                         "to continue it")


def _train_data(args, protocol: str, bseed: int):
    """``x_train, x_test, image_shape, data_info, words, labels`` for ``train``.

    ``labels`` is ``(y_train, y_test)`` for MNIST, None for a set without labels.
    """
    from . import data
    from .handwriting import make_handwriting

    name = args.dataset
    labels = None
    if name == "mnist":
        train = data.load_mnist("train", binarize=protocol, seed=bseed)
        test = data.load_mnist("test", binarize=protocol, seed=bseed)
        x_train, x_test, labels = train.x, test.x, (train.y, test.y)
        shape, info = (28, 28), {"dataset": "mnist"}
    else:
        if name == "handwriting":
            make_seed = args.seed + 1
            ds, _ = make_handwriting(HANDWRITING_TOTAL, np.random.default_rng(make_seed))
            grey_train, grey_test = ds.x[:HANDWRITING_TRAIN], ds.x[HANDWRITING_TRAIN:]
            shape, info = ds.image_shape, {"dataset": "handwriting", "make_seed": make_seed}
        else:
            if Path(name).suffix != ".npy":
                raise InputError(f"--dataset must be one of {', '.join(DATASETS)} or a .npy file "
                                 f"of shape (N, D); got {name!r}")
            x = _read_npy(name, "--dataset", min_rows=2)
            if protocol != "none":
                _check_unit_interval(x, f"--dataset {name}", f"for --binarize {protocol}")
            n_test = max(1, len(x) // 10)
            grey_train, grey_test = x[n_test:], x[:n_test]
            shape, info = _image_shape(x.shape[1]), {"dataset": name}
        x_train = data.binarize_split(grey_train, protocol, "train", bseed)
        x_test = data.binarize_split(grey_test, protocol, "test", bseed)
    info["binarize"] = protocol
    if protocol == "static":
        info["seed"] = bseed
    elif protocol == "dynamic":  # the training draws come from the training RNG
        info.update(seed=args.seed, test_seed=data.DYNAMIC_TEST_SEED)
    words = _protocol_words(protocol, seed=bseed, test_seed=data.DYNAMIC_TEST_SEED,
                            training=True)
    return x_train, x_test, shape, info, words, labels


def cmd_train(args) -> int:
    from .model import ModelConfig, make_model
    from .plots import image_grid, plot_history, save_figure
    from .train import fit, make_optimizer

    protocol, bseed, objective, settings = _check_train_args(args)
    out = _check_out_folder(args.out)
    _check_not_overwriting(args, out)
    _check_resume(args, protocol, bseed, objective)
    x_train, x_test, image_shape, data_info, words, labels = _train_data(args, protocol, bseed)
    config = ModelConfig(input_dim=x_train.shape[1], **settings)
    model = make_model(config, np.random.default_rng(args.seed), backend=args.backend)
    optimizer = make_optimizer(model, args.optimizer, args.lr)
    y_train, y_test = labels if config.num_classes else (None, None)
    if args.limit:
        x_train = x_train[: args.limit]
        y_train = None if y_train is None else y_train[: args.limit]
    print(f"training a {'conditional ' if config.num_classes else ''}"
          f"{config.kind.upper()} {config.input_dim}-"
          f"{'-'.join(map(str, config.hidden_dims))}-{config.latent_dim} on {args.dataset} "
          f"({len(x_train)} train, {len(x_test)} test examples; {words}), objective: "
          f"{objective.describe(model) if config.kind == 'vae' else 'reconstruction loss'}, "
          f"seed {args.seed}", flush=True)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out {args.out}: cannot make the folder ({err.strerror})") from err
    ckpt = out / "checkpoint.npz"
    try:
        history = fit(model, x_train, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=optimizer, rng=np.random.default_rng(args.seed), x_test=x_test,
                      binarize="dynamic" if protocol == "dynamic" else None,
                      progress=not args.no_progress, checkpoint=ckpt, resume=args.resume,
                      log=lambda line: print(line, flush=True), objective=objective,
                      data_info=data_info, y=y_train, y_test=y_test)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that wrote nothing leaves no empty folder behind
        raise
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = objective.describe(model)
    axes = plot_history(history, objective=None if words == "negative ELBO" else words)
    save_figure(axes[0].figure, out / "loss.png")
    plt.close("all")
    xt = x_test[:32]
    yt = None if y_test is None else y_test[:32]
    rec = model.backend.asnumpy(model.reconstruct(model.backend.asarray(xt), yt)) \
        if config.kind == "vae" else model.backend.asnumpy(
            model.mean_image(model.decode(model.encode(model.backend.asarray(xt), yt), yt)))
    pairs = np.stack([xt, rec], axis=1).reshape(-1, xt.shape[1])
    ax = image_grid(pairs, image_shape=image_shape, ncols=16,
                    title="test images and their reconstructions, side by side")
    save_figure(ax.figure, out / "reconstructions.png")
    plt.close("all")
    wrote = [ckpt, out / "loss.png", out / "reconstructions.png"]
    if config.kind == "vae":
        n, digits, title = _sample_plan(model, 64, None)
        samples = model.backend.asnumpy(model.sample(n, np.random.default_rng(args.seed),
                                                     digits))
        ax = image_grid(samples, image_shape=image_shape, ncols=10 if digits is not None else 8,
                        title=title)
        save_figure(ax.figure, out / "samples.png")
        plt.close("all")
        wrote.append(out / "samples.png")
    (out / "history.json").write_text(json.dumps(history.to_dict(), indent=1))
    wrote.append(out / "history.json")
    print("wrote " + ", ".join(str(p) for p in wrote))
    return 0


# -- evaluate --------------------------------------------------------------------------
def _check_evaluate_args(args) -> None:
    """Every check that needs neither the checkpoint nor the data."""
    from . import data

    _at_least("--iw-samples", args.iw_samples, 1)
    _at_least("--limit", args.limit, 0)
    if args.data is not None:
        if args.dataset is not None:
            raise InputError("give --data FILE.npy or --dataset NAME, not both")
        if args.binarize is not None:
            raise InputError("--binarize is not used with --data: its rows are evaluated as "
                             "they are (binarize them yourself first if you want binary targets)")
    if args.dataset is not None and args.dataset not in DATASETS:
        if Path(args.dataset).suffix == ".npy":
            raise InputError(f"evaluate --dataset takes {' or '.join(DATASETS)}; to evaluate on "
                             f"the rows of a file, pass --data {args.dataset} (all rows, no split)")
        raise InputError(f"--dataset must be one of {', '.join(DATASETS)}; got {args.dataset!r}"
                         " (for a .npy file of rows, use --data FILE.npy)")
    if args.binarize is not None:
        data.check_protocol(args.binarize)


def _load_for_evaluate(path: str, backend):
    """:func:`load_checkpoint`, with a pointer to ``--data`` when ``path`` holds data."""
    from .checkpoint import load_checkpoint

    try:
        return load_checkpoint(path, backend=backend)
    except CheckpointError as err:
        if " is a .npy array" in str(err):
            raise CheckpointError(f"{err}. To evaluate a checkpoint on these rows, pass them "
                                  f"as --data: evaluate CKPT --data {path}") from None
        raise


def _evaluate_targets(args, ckpt):
    """``(x, words)``: the targets to evaluate on and how they were made, in words."""
    from . import data
    from .handwriting import make_handwriting

    info = ckpt.data or {}
    trained = info.get("binarize", "none")
    if args.data is not None:
        x = _read_npy(args.data, "--data")
        binary = bool(np.all((x == 0) | (x == 1)))
        words = f"all {len(x)} rows of {args.data}, as given ({'binary' if binary else 'grey'}"
        if trained != "none" and not binary:
            words += f"; the model was trained on binary targets: --binarize {trained}"
        return x, words + ")"
    if args.binarize is not None:
        protocol = args.binarize
    else:
        try:
            protocol = data.check_protocol(trained)
        except InputError:
            raise CheckpointError(f"{args.checkpoint} records the binarization {trained!r}, "
                                  f"which this version does not know; choose the test targets "
                                  f"with --binarize ({', '.join(data.PROTOCOLS)})") from None
    dataset = args.dataset or info.get("dataset", "mnist")
    if dataset not in DATASETS:
        raise InputError(f"{args.checkpoint} was trained on {dataset}; pass the rows to evaluate "
                         f"with --data FILE.npy (all rows are used), or give --dataset "
                         f"{' or '.join(DATASETS)}")
    seed = info.get("seed", data.STATIC_SEED) if trained == "static" else data.STATIC_SEED
    test_seed = info.get("test_seed", data.DYNAMIC_TEST_SEED)
    if dataset == "mnist":
        grey, where = data.load_mnist("test").x, "MNIST test split"
    else:
        make_seed = info.get("make_seed", 1)  # train --seed 0 makes the set with seed 1
        ds, _ = make_handwriting(HANDWRITING_TOTAL, np.random.default_rng(make_seed))
        grey = ds.x[HANDWRITING_TRAIN:]
        where = (f"handwriting test part ({len(grey)} images, generator seed {make_seed})")
    if protocol == "dynamic":
        x = data.dynamic_binarize(grey, np.random.default_rng(test_seed))
    else:
        x = data.binarize_split(grey, protocol, "test", seed)
    how = _protocol_words(protocol, seed=seed, test_seed=test_seed, training=False)
    return x, f"{where}, {how}"


def cmd_evaluate(args) -> int:
    from .evaluate import active_units, iw_estimate, negative_elbo, objective_name

    _check_evaluate_args(args)
    ckpt = _load_for_evaluate(args.checkpoint, args.backend)
    model = ckpt.model
    x, words = _evaluate_targets(args, ckpt)
    D = model.config.input_dim
    if x.shape[1] != D:
        source = f"--data {args.data}" if args.data is not None else "the test set"
        raise InputError(f"the checkpoint's model reads {D} inputs per example; {source} has "
                         f"{x.shape[1]}. Give data of shape (N, {D})")
    if model.config.likelihood != "gaussian" and args.data is not None:
        which = "continuous " if model.config.likelihood == "continuous_bernoulli" else ""
        _check_unit_interval(x, f"--data {args.data}", f"for a {which}Bernoulli decoder")
    y = _evaluate_labels(args, ckpt, len(x))
    if args.limit:
        x = x[: args.limit]
        y = None if y is None else y[: args.limit]
    x = x.astype(model.dtype, copy=False)
    binary = bool(np.all((x == 0) | (x == 1)))
    print(f"test targets: {words}", flush=True)
    if y is not None:
        print("a conditional model: every number below is given the digit's label, a bound "
              "on -log p(x|y), not on -log p(x)", flush=True)
    terms = negative_elbo(model, x, y=y)
    if model.config.kind != "vae":
        print(f"test reconstruction loss: {terms['loss']:.3f} nats over {len(x)} examples "
              "(an autoencoder: no importance-weighted bound or active units)")
        return 0
    print(f"test {objective_name(model)}: {terms['loss']:.3f} nats (reconstruction "
          f"{terms['rec']:.3f}, KL {terms['kl']:.3f}) over {len(x)} examples", flush=True)
    est = iw_estimate(model, x, args.iw_samples, y=y, progress=not args.no_progress)
    spread = (f"standard error {est.stderr:.3f}" if math.isfinite(est.stderr)
              else "no standard error from one example")
    numbers = f"{est.nll:.3f} nats, {spread} over {est.n} examples, {est.seconds:.1f}s"
    k = args.iw_samples
    if model.config.likelihood != "bernoulli":   # Gaussian, continuous Bernoulli: densities
        print(f"importance-weighted estimate of -log p(x), k={k}: {numbers} (a density of "
              "continuous pixel values: not comparable with Bernoulli NLLs)")
    elif binary:
        print(f"test NLL estimate (importance-weighted bound, k={k}): {numbers}")
    else:
        print(f"importance-weighted bound, k={k}: {numbers} (an upper bound on the expected "
              "-log p(b) of binary digits b drawn from these grey levels; log p(b|z) is linear "
              "in b and log-mean-exp is convex)")
    print(f"active units: {active_units(model, x, y=y)} of {model.config.latent_dim}")
    return 0


def _evaluate_labels(args, ckpt, n: int):
    """The test labels a conditional model needs (MNIST's), or None for another model."""
    from . import data

    if not ckpt.model.config.num_classes:
        return None
    dataset = args.dataset or (ckpt.data or {}).get("dataset", "mnist")
    if args.data is not None or dataset != "mnist":
        source = f"--data {args.data}" if args.data is not None else f"--dataset {dataset}"
        raise InputError(f"{args.checkpoint} is a conditional model: it reads each image's "
                         f"label, and {source} has none; evaluate it on --dataset mnist")
    y = data.load_mnist("test").y
    if len(y) != n:
        raise InputError(f"the MNIST test labels ({len(y)}) do not match its {n} images")
    return y


def cmd_sample(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .checkpoint import load_checkpoint
    from .plots import image_grid, save_figure

    model = load_checkpoint(args.checkpoint, backend=args.backend).model
    if model.config.kind != "vae":
        raise InputError("sampling needs a VAE checkpoint; an autoencoder has no prior")
    if args.n < 1:
        raise InputError(f"-n must be >= 1; got {args.n}")
    shape = _image_shape(model.config.input_dim)
    n, digits, title = _sample_plan(model, args.n, args.digit)
    images = model.backend.asnumpy(model.sample(n, np.random.default_rng(args.seed), digits))
    ncols = 10 if digits is not None and args.digit is None else min(8, n)
    ax = image_grid(images, image_shape=shape, ncols=ncols, title=title)
    save_figure(ax.figure, args.out)
    print(f"wrote {args.out}")
    return 0


def _sample_plan(model, n: int, digit):
    """``(n, labels, title)``: what to draw from ``model``'s prior.

    A conditional model draws ``digit`` n times, or, with no digit asked for, the
    digits 0-9 in turn (one column each): n rounded up to a multiple of 10.
    """
    C = model.config.num_classes
    if not C:
        if digit is not None:
            raise InputError("--digit needs a conditional model (train --conditional); this "
                             "one draws from p(z) alone")
        return n, None, f"{n} samples from the prior"
    if digit is not None:
        if not 0 <= digit < C:
            raise InputError(f"--digit must be one of 0..{C - 1}; got {digit}")
        return n, np.full(n, digit), f"{n} samples of the digit {digit}, z from the prior"
    n = -(-n // C) * C
    return n, np.arange(n) % C, f"{n} samples, z from the prior; column j is the digit j"


def cmd_bench(args) -> int:
    from .bench import run_benchmark, to_markdown, write_outputs

    if args.backend not in (None, "numpy"):
        raise InputError("bench compares the backends itself; leave out --backend")
    if args.sparse:
        from .bench import run_sparse_study, sparse_markdown

        if args.paths is not None or args.quick:
            raise InputError("--sparse times the first layer's kernels only; leave out "
                             "--paths and --quick")
        if args.gemm_reps < 1:
            raise InputError(f"--gemm-reps must be >= 1; got {args.gemm_reps}")
        if args.processes is None:
            args.processes = 5
        if args.processes < 1:
            raise InputError(f"--processes must be >= 1; got {args.processes}")
        result = run_sparse_study(batch_size=args.batch_size, seed=args.seed,
                                  reps=args.gemm_reps, processes=args.processes)
        md, js = write_outputs(result, args.out, name=args.name or "sparse",
                               render=sparse_markdown)
        print(sparse_markdown(result))
        print(f"wrote {md} and {js}")
        return 0
    if args.processes is not None:
        raise InputError("--processes goes with --sparse only")
    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1; got {args.epochs}")
    from .bench import ALL_PATHS, PATHS

    paths = PATHS if args.paths is None else tuple(
        p.strip() for p in args.paths.split(",") if p.strip())
    unknown = [p for p in paths if p not in ALL_PATHS]
    if unknown or not paths:
        raise InputError(f"--paths: unknown path(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(ALL_PATHS)}")
    result = run_benchmark(epochs=args.epochs, batch_size=args.batch_size,
                           limit=args.limit or None, use_torch=not args.no_torch,
                           use_jax=not args.no_jax,
                           seed=args.seed, gemm_reps=args.gemm_reps, extras=not args.quick,
                           log=lambda line: print(line, flush=True), paths=paths)
    md, js = write_outputs(result, args.out, name=args.name or "bench")
    print()
    print(to_markdown(result))
    print(f"wrote {md} and {js}")
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import main

    args.argv_echo = getattr(args, "argv_echo", [])
    return main(args, log=lambda line: print(line, flush=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_numpy",
        description="Train, evaluate and sample a variational autoencoder written in NumPy.",
        epilog="MNIST is read from $VAE_NUMPY_DATA/mnist, the user cache, or downloaded.",
    )
    parser.add_argument("--backend", default=None, choices=("numpy", "numpy-ref", "cupy"),
                        help="array backend (default: $VAE_NUMPY_BACKEND or numpy)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model and write a checkpoint and figures",
                       description="Train a VAE (or an autoencoder); print the test loss "
                       "(the negative ELBO when beta = 1) each epoch; write checkpoint.npz, "
                       "loss.png, reconstructions.png, samples.png and history.json into --out. "
                       "The checkpoint records the data protocol, so 'evaluate' scores it on "
                       "the matching test targets.")
    p.add_argument("--dataset", default="mnist",
                   help="mnist, handwriting, or a .npy file of shape (N, D) whose first tenth "
                   "is held out as the test set (default: mnist)")
    p.add_argument("--model", default="vae", choices=("vae", "ae"), help="default: vae")
    p.add_argument("--latent-dim", type=int, default=20, help="K (default: 20)")
    p.add_argument("--hidden", type=int, nargs="+", default=[400],
                   help="hidden layer widths (default: 400)")
    p.add_argument("--conditional", action="store_true",
                   help="a conditional VAE (or autoencoder): the digit's label, one-hot, is "
                        "concatenated to the encoder's and the decoder's inputs (MNIST only)")
    p.add_argument("--activation", default="relu", choices=("relu", "tanh"),
                   help="of every hidden layer (default: relu; the IWAE paper uses tanh)")
    p.add_argument("--likelihood", default="bernoulli",
                   choices=("bernoulli", "gaussian", "continuous-bernoulli"),
                   help="the decoder's p(x|z): bernoulli (binary pixels; grey levels as soft "
                   "targets), gaussian, or continuous-bernoulli (a density of grey levels in "
                   "[0, 1], Loaiza-Ganem and Cunningham 2019) (default: bernoulli)")
    p.add_argument("--gaussian-std", type=float, default=None, metavar="S",
                   help="Gaussian decoder: a fixed standard deviation for every pixel "
                   "(default: learn one variance per pixel)")
    p.add_argument("--gaussian-std-floor", type=float, default=None, metavar="F",
                   help="Gaussian decoder with a learned variance: the smallest standard "
                   "deviation a pixel may reach, which keeps the likelihood bounded "
                   "(default: 1/255, one grey level; 0 turns the floor off)")
    p.add_argument("--beta", type=float, default=1.0,
                   help="KL weight (default: 1, the ELBO; with any other value the test loss "
                   "is the beta-weighted objective, and is named so)")
    p.add_argument("--kl-warmup", type=int, default=0, metavar="EPOCHS",
                   help="anneal the KL weight linearly from 0 to --beta over the first EPOCHS "
                   "epochs (beta = --beta * epoch / EPOCHS), at most --epochs; the test "
                   "loss is still computed at --beta: the negative ELBO when --beta is 1 "
                   "(default: 0, none)")
    p.add_argument("--free-bits", type=float, default=0.0, metavar="LAMBDA",
                   help="free bits (Kingma et al. 2016): floor each latent unit's batch-mean KL "
                   "at LAMBDA nats, so a unit below it gets no KL gradient; trains on the "
                   "reference path (default: 0, none)")
    p.add_argument("--objective", default="elbo", choices=("elbo", "iwae"),
                   help="what training minimises: the negative ELBO, or the negative "
                   "importance-weighted bound with --iw-k samples (default: elbo)")
    p.add_argument("--iw-k", type=int, default=None, metavar="K",
                   help=f"samples per example of --objective iwae (default: {DEFAULT_IWAE_K})")
    p.add_argument("--epochs", type=int, default=10,
                   help="train up to this epoch, counted from the start (default: 10)")
    p.add_argument("--batch-size", type=int, default=128, help="default: 128")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--binarize", default="none", metavar="PROTOCOL",
                   help="how pixels become targets: none (grey levels), dynamic (a fresh "
                   "Bernoulli draw each minibatch; the test set drawn once), static (one "
                   "seeded draw, kept), threshold (pixel >= 0.5) (default: none)")
    p.add_argument("--binarize-seed", type=int, default=None, metavar="SEED",
                   help="seed of the --binarize static draw (default: 20080101)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training examples")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--out", required=True, help="folder for the checkpoint and figures")
    p.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue from this checkpoint up to --epochs (same data protocol, "
                   "objective, --kl-warmup and --free-bits)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in --out (without it, train refuses)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate", help="test loss, importance-weighted bound and active units of a checkpoint",
        description="Score a checkpoint: the test negative ELBO (the beta-weighted objective "
        "when beta != 1), the importance-weighted bound on -log p(x) with its standard error, "
        "and the active units. By default the test targets match the checkpoint's data "
        "protocol (MNIST test split, binarized as in training); the line 'test targets:' says "
        "which were used.")
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint.npz that train wrote")
    p.add_argument("--iw-samples", type=int, default=100, metavar="K",
                   help="k of the importance-weighted bound (default: 100; papers use 5000)")
    p.add_argument("--dataset", default=None,
                   help="mnist or handwriting: its test part (default: the checkpoint's "
                   "dataset, else mnist). For a .npy file use --data")
    p.add_argument("--data", default=None, metavar="FILE.npy",
                   help="evaluate on every row of this (N, D) array, as given (no split, no "
                   "binarization); values in [0, 1] for a Bernoulli decoder")
    p.add_argument("--binarize", default=None, metavar="PROTOCOL",
                   help="test targets: none, dynamic, static or threshold (default: the "
                   "checkpoint's protocol)")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N test examples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="decode draws from the prior into a PNG grid")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--digit", type=int, default=None, metavar="D",
                   help="a conditional model: draw this digit (default: each digit in turn)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="time training: numba path, reference, GEMM floor, JAX, "
                       "PyTorch",
                       description="Train the default VAE along several paths, one epoch of "
                       "each in turn: the numba path, the NumPy reference path, the GEMMs alone, "
                       "JAX (the whole step under jax.jit) and PyTorch on the CPU in three "
                       "configurations (default; fused Adam; fused Adam and flushed denormals), "
                       "JAX and PyTorch when they are installed. Report median seconds per "
                       "epoch, their ratios and where the time goes; time every GEMM shape in "
                       "BLAS and in numba; measure compilation and peak memory. Writes a "
                       "Markdown table and JSON into --out.")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per path (default: 3)")
    p.add_argument("--batch-size", type=int, default=128, help="default: 128")
    p.add_argument("--limit", type=int, default=0,
                   help="train on the first N MNIST images only (default: all 60,000)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-jax", action="store_true", help="leave JAX out")
    p.add_argument("--paths", default=None,
                   help="comma-separated paths to time (default: numba,reference,gemm,jax,"
                        "torch,torch-fused,torch-fused-flush; also numba-compact, "
                        "numba-threads: variants "
                        "the library left out)")
    p.add_argument("--quick", action="store_true",
                   help="only the paths: no GEMM table, compilation or memory runs")
    p.add_argument("--gemm-reps", type=int, default=30,
                   help="repetitions per GEMM shape, or per row of --sparse (default: 30)")
    p.add_argument("--sparse", action="store_true",
                   help="instead of training, time the sparse first layer step by step "
                        "(vae_numpy.sparse_study: building the sparse form, unrolling, "
                        "bounds checks, blocking, threads) against BLAS, on one batch")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="with --sparse: fresh processes to time it in, one after the other "
                        "(default: 5)")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--out", default="bench-out", help="output folder (default: bench-out)")
    p.add_argument("--name", default=None,
                   help="file names: NAME.md and NAME.json (default: bench, or sparse with "
                        "--sparse)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "reproduce", help="reproduce a published table (iwae: Burda et al. 2016, Table 1)",
        description="Train the IWAE paper's one-stochastic-layer MNIST models (784-200-200-50, "
        "tanh, dynamic binarization) with the VAE objective (k=1) and the IWAE objective "
        "(k=5), estimate the test NLL with k=5000 over the 10,000 test digits, and write "
        "iwae-table1.json and .md into --results. Resumable: run the same command again "
        "to continue. See vae_numpy/reproduce.py for every deviation from the paper.")
    p.add_argument("table", choices=("iwae",), help="which table (only iwae)")
    p.add_argument("--rows", nargs="+", default=["vae", "iwae"], choices=("vae", "iwae"),
                   help="rows to train now (default: both, one after the other)")
    p.add_argument("--epochs", type=int, default=3280, help="epochs per row (paper: 3280)")
    p.add_argument("--batch-size", type=int, default=100, help="default: 100 (paper: 20)")
    p.add_argument("--schedule", choices=("paper", "short"), default=None,
                   help="learning-rate schedule (default: paper at >= 3280 epochs, else short)")
    p.add_argument("--eval-k", type=int, default=5000, help="k of the test NLL (default: 5000)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N digits only")
    p.add_argument("--eval-limit", type=int, default=None,
                   help="evaluate the first N test digits only (default: all 10,000)")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--work", default="runs/iwae-table1",
                   help="folder for checkpoints (default: runs/iwae-table1)")
    p.add_argument("--results", default="book/results",
                   help="folder for iwae-table1.json/.md (default: book/results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "reproduce":  # the results file records the exact command
        args.argv_echo = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except VAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
