"""Command line: ``python -m vae_numpy train | evaluate | sample | bench``.

Run ``python -m vae_numpy COMMAND --help`` for each command's options. Any bad
input (a file, a setting, data out of range) ends the program with a one-line
``error: ...`` message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import InputError, VAEError

DATASETS = ("mnist", "handwriting")


def _load_dataset(name: str, *, binarize: str | None, seed: int, train: bool = True):
    """``(x_train, x_test, image_shape)`` for a dataset name or an ``.npy`` file.

    With ``train=False`` only the test part is needed and ``x_train`` may be None.
    """
    from . import data

    if name == "mnist":
        fixed = "fixed" if binarize == "fixed" else None
        x_train = data.load_mnist("train", binarize=fixed).x if train else None
        return x_train, data.load_mnist("test", binarize=fixed).x, (28, 28)
    if name == "handwriting":
        rng = np.random.default_rng(seed + 1)
        ds, _ = data.make_handwriting(12000, rng)
        return ds.x[:10000], ds.x[10000:], ds.image_shape
    path = Path(name)
    if path.suffix != ".npy":
        raise InputError(f"--dataset must be one of {', '.join(DATASETS)} or a .npy file of "
                         f"shape (N, D); got {name!r}")
    if not path.is_file():
        raise InputError(f"--dataset {name}: no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"--dataset {name}: not a readable .npy array ({err})") from err
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"--dataset {name}: expected an array of shape (N, D), N >= 2; "
                         f"got {x.shape}")
    x = x.astype(np.float32)
    n_test = max(1, len(x) // 10)
    side = int(round(np.sqrt(x.shape[1])))
    shape = (side, side) if side * side == x.shape[1] else (1, x.shape[1])
    return x[n_test:], x[:n_test], shape


def cmd_train(args) -> int:
    from .model import ModelConfig, make_model
    from .plots import image_grid, plot_history, save_figure
    from .train import fit, make_optimizer

    out = Path(args.out)
    x_train, x_test, image_shape = _load_dataset(args.dataset, binarize=args.binarize,
                                                 seed=args.seed)
    config = ModelConfig(kind=args.model, input_dim=x_train.shape[1],
                         hidden_dims=tuple(args.hidden), latent_dim=args.latent_dim,
                         likelihood=args.likelihood, beta=args.beta)
    model = make_model(config, np.random.default_rng(args.seed), backend=args.backend)
    optimizer = make_optimizer(model, args.optimizer, args.lr)
    if args.limit:
        x_train = x_train[: args.limit]
    print(f"training a {config.kind.upper()} {config.input_dim}-"
          f"{'-'.join(map(str, config.hidden_dims))}-{config.latent_dim} on {args.dataset} "
          f"({len(x_train)} train, {len(x_test)} test examples), seed {args.seed}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.npz"
    history = fit(model, x_train, epochs=args.epochs, batch_size=args.batch_size,
                  optimizer=optimizer, rng=np.random.default_rng(args.seed), x_test=x_test,
                  binarize="dynamic" if args.binarize == "dynamic" else None,
                  progress=not args.no_progress, checkpoint=ckpt, resume=args.resume,
                  log=lambda line: print(line, flush=True))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = plot_history(history)
    save_figure(axes[0].figure, out / "loss.png")
    plt.close("all")
    xt = x_test[:32]
    rec = model.backend.asnumpy(model.reconstruct(model.backend.asarray(xt))) \
        if config.kind == "vae" else model.backend.asnumpy(
            model.mean_image(model.decode(model.encode(model.backend.asarray(xt)))))
    pairs = np.stack([xt, rec], axis=1).reshape(-1, xt.shape[1])
    ax = image_grid(pairs, image_shape=image_shape, ncols=16,
                    title="test images and their reconstructions, side by side")
    save_figure(ax.figure, out / "reconstructions.png")
    plt.close("all")
    wrote = [ckpt, out / "loss.png", out / "reconstructions.png"]
    if config.kind == "vae":
        samples = model.backend.asnumpy(model.sample(64, np.random.default_rng(args.seed)))
        ax = image_grid(samples, image_shape=image_shape, title="samples from the prior")
        save_figure(ax.figure, out / "samples.png")
        plt.close("all")
        wrote.append(out / "samples.png")
    (out / "history.json").write_text(json.dumps(history.to_dict(), indent=1))
    print("wrote " + ", ".join(str(p) for p in wrote))
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import load_checkpoint
    from .evaluate import active_units, iw_log_likelihood, negative_elbo

    model = load_checkpoint(args.checkpoint, backend=args.backend).model
    _, x_test, _ = _load_dataset(args.dataset, binarize=None, seed=0, train=False)
    if model.config.input_dim != x_test.shape[1]:
        raise InputError(f"the checkpoint's model reads {model.config.input_dim} inputs; "
                         f"{args.dataset} has {x_test.shape[1]}")
    if args.limit:
        x_test = x_test[: args.limit]
    terms = negative_elbo(model, x_test)
    print(f"test negative ELBO: {terms['loss']:.3f} nats "
          f"(reconstruction {terms['rec']:.3f}, KL {terms['kl']:.3f}) over {len(x_test)} examples")
    if model.config.kind == "vae":
        if args.iw_samples < 1:
            raise InputError(f"--iw-samples must be >= 1; got {args.iw_samples}")
        ll = iw_log_likelihood(model, x_test, args.iw_samples)
        print(f"importance-weighted estimate of -log p(x), k={args.iw_samples}: {-ll:.3f} nats")
        print(f"active units: {active_units(model, x_test)} of {model.config.latent_dim}")
    return 0


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
    d = model.config.input_dim
    side = int(round(np.sqrt(d)))
    shape = (side, side) if side * side == d else (1, d)
    images = model.backend.asnumpy(model.sample(args.n, np.random.default_rng(args.seed)))
    ax = image_grid(images, image_shape=shape, ncols=min(8, args.n),
                    title=f"{args.n} samples from the prior")
    save_figure(ax.figure, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_benchmark, to_markdown, write_outputs

    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1; got {args.epochs}")
    if args.backend not in (None, "numpy"):
        raise InputError("bench compares the backends itself; leave out --backend")
    result = run_benchmark(epochs=args.epochs, batch_size=args.batch_size,
                           limit=args.limit or None, use_torch=not args.no_torch,
                           seed=args.seed, gemm_reps=args.gemm_reps, extras=not args.quick,
                           log=lambda line: print(line, flush=True))
    md, js = write_outputs(result, args.out, name=args.name)
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
                       description="Train a VAE (or an autoencoder); print the test negative "
                       "ELBO each epoch; write checkpoint.npz, loss.png, reconstructions.png, "
                       "samples.png and history.json into --out.")
    p.add_argument("--dataset", default="mnist",
                   help="mnist, handwriting, or a .npy file of shape (N, D) (default: mnist)")
    p.add_argument("--model", default="vae", choices=("vae", "ae"), help="default: vae")
    p.add_argument("--latent-dim", type=int, default=20, help="K (default: 20)")
    p.add_argument("--hidden", type=int, nargs="+", default=[400],
                   help="hidden layer widths (default: 400)")
    p.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "gaussian"))
    p.add_argument("--beta", type=float, default=1.0, help="KL weight (default: 1)")
    p.add_argument("--epochs", type=int, default=10, help="default: 10")
    p.add_argument("--batch-size", type=int, default=128, help="default: 128")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--binarize", default="none", choices=("none", "fixed", "dynamic"),
                   help="pixels as grey levels (none), thresholded, or resampled each batch")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training examples")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--out", required=True, help="folder for the checkpoint and figures")
    p.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue from this checkpoint up to --epochs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test negative ELBO and importance-weighted log p(x)")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--iw-samples", type=int, default=100,
                   help="k of the importance-weighted bound (default: 100)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N test examples")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="decode draws from the prior into a PNG grid")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="time training: numba path, reference, GEMM floor, PyTorch",
                       description="Train the default VAE along four paths, one epoch of each "
                       "in turn: the numba path, the NumPy reference path, the GEMMs alone, and "
                       "PyTorch on the CPU when it is installed. Report median seconds per "
                       "epoch, their ratios and where the time goes; time every GEMM shape in "
                       "BLAS and in numba; measure compilation and peak memory. Writes a "
                       "Markdown table and JSON into --out.")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per path (default: 3)")
    p.add_argument("--batch-size", type=int, default=128, help="default: 128")
    p.add_argument("--limit", type=int, default=0,
                   help="train on the first N MNIST images only (default: all 60,000)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--quick", action="store_true",
                   help="only the four paths: no GEMM table, compilation or memory runs")
    p.add_argument("--gemm-reps", type=int, default=30,
                   help="repetitions per GEMM shape (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--out", default="bench-out", help="output folder (default: bench-out)")
    p.add_argument("--name", default="bench",
                   help="file names: NAME.md and NAME.json (default: bench)")
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
