"""Reproducing a published table: ``python -m vae_numpy reproduce iwae``.

Burda, Grosse and Salakhutdinov (2016), *Importance Weighted Autoencoders*, Table 1,
MNIST with one stochastic layer: a 784-200-200-50 network with tanh hidden layers
(the decoder mirrors it), trained on dynamically binarized MNIST with the VAE
objective (k = 1) and with the IWAE objective (k = 5), and scored by the
importance-weighted estimate of the test negative log-likelihood with k = 5000 over
the 10,000 test digits (binarized once, with :data:`vae_numpy.data.DYNAMIC_TEST_SEED`).

Every row trains in its own folder under ``--work`` with a checkpoint after every
epoch; running the same command again resumes where it stopped (bit for bit: the
RNG state is in the checkpoint) and skips what is done. When a row has finished
training and evaluation, ``iwae-table1.json`` and ``iwae-table1.md`` in
``--results`` are rewritten (atomically) with every finished row.

What differs from the paper, on purpose (also written into the results file):

* batch 100 instead of 20, because a 2-core machine runs batch 20 several times
  slower per epoch;
* the learning-rate schedule: the paper's is 8 stages of 3^i epochs at
  ``1e-3 * 10**(-i/7)`` (3,280 epochs). ``--schedule paper`` keeps those proportions
  for any ``--epochs`` (exact at 3,280); ``--schedule short`` spends the first half of
  the epochs at 1e-3 and the second half in 7 equal stages at ``1e-3 * 10**(-i/7)``,
  i = 1..7, which suits a budget far below the paper's;
* initialisation: this library's (PyTorch's default, uniform in +-1/sqrt(fan_in));
* Adam with the paper's settings (b1 0.9, b2 0.999, eps 1e-4).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .io import atomic_write

#: The paper's Table 1 rows we reproduce (one stochastic layer, MNIST, k = 5000).
PAPER_ROWS = {
    "vae": {"objective": "VAE", "k": 1, "nll": 86.76, "active_units": 19},
    "iwae": {"objective": "IWAE", "k": 5, "nll": 85.54, "active_units": 22},
}
GOAL_MARGIN = 1.5          # nats: the goal is the paper's NLL plus this
PAPER_EPOCHS = 3280        # sum of 3^i, i = 0..7
PAPER_BATCH = 20
ARCH = {"hidden_dims": (200, 200), "latent_dim": 50, "activation": "tanh"}
ADAM = {"betas": (0.9, 0.999), "eps": 1e-4}
SCHEDULES = ("paper", "short")


def learning_rate(epoch: int, epochs: int, schedule: str, lr: float = 1e-3) -> float:
    """The learning rate of ``epoch`` (1-based) in a run of ``epochs`` epochs."""
    if schedule == "paper":
        # stage i covers the fraction (3^i)/3280 of the run, in order
        done = 0.0
        for i in range(8):
            done += 3**i / PAPER_EPOCHS
            if epoch <= round(done * epochs):
                return lr * 10 ** (-i / 7)
        return lr * 10 ** (-7 / 7)
    if schedule == "short":
        half = epochs / 2
        if epoch <= half:
            return lr
        i = min(7, 1 + int((epoch - 1 - half) * 7 // max(epochs - half, 1)))
        return lr * 10 ** (-i / 7)
    raise ConfigError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")


def _machine() -> dict:
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "NUMBA_NUM_THREADS") if k in os.environ}
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "cpu": cpu, "cores": os.cpu_count(), "threads": threads}


def run_row(row: str, *, work: Path, epochs: int, batch_size: int, schedule: str,
            eval_k: int, seed: int, limit: int | None, eval_limit: int | None,
            progress: bool, log, command: str = "") -> dict:
    """Train (or resume) one row, evaluate it, and return its result dict.

    ``command`` (the command line that runs this row) is stored with the result.
    """
    from . import data
    from .checkpoint import load_checkpoint
    from .evaluate import active_units, iw_estimate, negative_elbo
    from .model import ModelConfig, make_model
    from .objectives import ELBO, IWAE
    from .optim import Adam
    from .train import fit

    paper = PAPER_ROWS[row]
    folder = work / row
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"row": row, "epochs": epochs, "batch_size": batch_size, "schedule": schedule,
                "eval_k": eval_k, "seed": seed, "limit": limit, "eval_limit": eval_limit}
    settings_file = folder / "settings.json"
    if settings_file.is_file() and json.loads(settings_file.read_text()) != settings:
        old = json.loads(settings_file.read_text())
        raise ConfigError(f"{folder} holds a run with other settings ({old}); give another "
                          "--work folder or delete that one to start afresh")
    settings_file.write_text(json.dumps(settings, indent=1))
    result_file = folder / "result.json"
    if result_file.is_file():
        log(f"{row}: finished before; {result_file}")
        result = json.loads(result_file.read_text())
        if command and "command" not in result:  # the settings matched: this command made it
            result["command"] = command
            with atomic_write(result_file, "w") as f:
                json.dump(result, f, indent=1)
        return result

    train = data.load_mnist("train", binarize="dynamic", limit=limit)
    test = data.load_mnist("test", binarize="dynamic", limit=eval_limit)
    config = ModelConfig(input_dim=784, **ARCH)
    model = make_model(config, np.random.default_rng(seed))
    optimizer = Adam(model.params, lr=1e-3, fused=None if model.backend.use_numba else False,
                     **ADAM)
    objective = ELBO() if paper["k"] == 1 else IWAE(paper["k"])
    ckpt = folder / "checkpoint.npz"
    resume = ckpt if ckpt.is_file() else None
    t0 = time.perf_counter()
    fit(model, train.x, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
        rng=np.random.default_rng(seed), x_test=test.x, binarize="dynamic", progress=progress,
        checkpoint=ckpt, resume=resume, objective=objective,
        lr_schedule=lambda e: learning_rate(e, epochs, schedule),
        data_info={"dataset": "mnist", "binarize": "dynamic",
                   "test_seed": data.DYNAMIC_TEST_SEED, "seed": seed},
        log=lambda line: log(f"{row}: {line}"))
    state = load_checkpoint(ckpt)
    history = state.history
    train_seconds = float(np.nansum(history.get("seconds", [])))
    log(f"{row}: trained {epochs} epochs ({time.perf_counter() - t0:.0f} s this run); "
        f"estimating the test NLL with k = {eval_k} over {len(test.x)} digits")
    est = iw_estimate(model, test.x, eval_k, progress=progress)
    elbo = negative_elbo(model, test.x)
    units = active_units(model, test.x)
    updates = epochs * math.ceil(len(train.x) / batch_size)
    result = {
        "row": row, "objective": paper["objective"], "k": paper["k"], "command": command,
        "test_nll": round(est.nll, 4), "test_nll_stderr": round(est.stderr, 4),
        "eval_k": eval_k, "eval_examples": est.n, "eval_seconds": round(est.seconds, 1),
        "test_negative_elbo": round(elbo["loss"], 4),
        "active_units": units, "latent_dim": config.latent_dim,
        "epochs": epochs, "updates": updates, "batch_size": batch_size,
        "schedule": schedule, "train_seconds": round(train_seconds, 1),
        "learning_curve": {"epoch": history["epoch"],
                           "test_negative_elbo": [round(v, 4) for v in history["test_loss"]],
                           "train_loss": [round(v, 4) for v in history["train_loss"]]},
        "paper": {"test_nll": paper["nll"], "active_units": paper["active_units"],
                  "goal": round(paper["nll"] + GOAL_MARGIN, 2)},
        "machine": _machine(),
    }
    with atomic_write(result_file, "w") as f:
        json.dump(result, f, indent=1)
    log(f"{row}: test NLL {est.nll:.2f} +- {est.stderr:.2f} (k = {eval_k}, {est.seconds:.0f} s), "
        f"active units {units}/{config.latent_dim}; paper {paper['nll']}")
    return result


def write_results(results: list[dict], out: Path) -> tuple[Path, Path]:
    """``iwae-table1.json`` and ``.md`` in ``out``, with every finished row."""
    out.mkdir(parents=True, exist_ok=True)
    for r in results:  # the paper's numbers come from here, not from when the row ran
        paper = PAPER_ROWS[r["row"]]
        r["paper"] = {"test_nll": paper["nll"], "active_units": paper["active_units"],
                      "goal": round(paper["nll"] + GOAL_MARGIN, 2)}
    doc = {
        "paper": "Burda, Grosse and Salakhutdinov (2016), Importance Weighted Autoencoders, "
                 "Table 1, MNIST, one stochastic layer",
        "commands": {r["row"]: r.get("command", "") for r in results},
        "protocol": "dynamic binarization: a fresh Bernoulli draw of every training pixel for "
                    "every minibatch; the test set binarized once with seed "
                    "vae_numpy.data.DYNAMIC_TEST_SEED; NLL = -(importance-weighted bound) at "
                    "k = eval_k, mean over the test digits, with its standard error over digits",
        "architecture": "784-200-200-50 (decoder 50-200-200-784), tanh, Bernoulli decoder",
        "deviations": [
            f"batch size {results[0]['batch_size'] if results else 100} (paper: {PAPER_BATCH})",
            "learning-rate schedule: see 'schedule' per row and vae_numpy.reproduce "
            f"(paper: 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7, {PAPER_EPOCHS} epochs)",
            "epochs: see each row (paper: 3280)",
            "initialisation: uniform in +-1/sqrt(fan_in) (PyTorch's default), not the "
            "paper's",
            "Adam b1 = 0.9, b2 = 0.999, eps = 1e-4 as in the paper",
        ],
        "rows": results,
    }
    js, md = out / "iwae-table1.json", out / "iwae-table1.md"
    with atomic_write(js, "w") as f:
        json.dump(doc, f, indent=1)
    lines = [
        "# IWAE paper, Table 1 (MNIST, one stochastic layer), reproduced",
        "",
        "Commands (rerun one to resume or to rewrite these files from the finished rows):",
        "",
        *[f"- {r['objective']}: `{r.get('command', '')}`" for r in results],
        "",
        "| objective | k | test NLL (nats) | std. error | paper NLL | goal | active units "
        "| paper units | epochs | updates | train time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['objective']} | {r['k']} | {r['test_nll']:.2f} | {r['test_nll_stderr']:.2f} "
            f"| {r['paper']['test_nll']:.2f} | <= {r['paper']['goal']:.2f} "
            f"| {r['active_units']}/{r['latent_dim']} | {r['paper']['active_units']} "
            f"| {r['epochs']} | {r['updates']:,} | {r['train_seconds'] / 3600:.2f} h |")
    lines += ["", f"Protocol: {doc['protocol']}.", "", "Deviations from the paper:", ""]
    lines += [f"- {d}" for d in doc["deviations"]]
    if results:
        m = results[0]["machine"]
        lines += ["", f"Machine: {m['cpu']} ({m['cores']} cores), {m['platform']}, "
                      f"NumPy {m['numpy']}, threads {m['threads'] or 'default'}."]
        lines += ["", "Schedules: " + "; ".join(f"{r['objective']}: {r['schedule']}"
                                                 for r in results) + "."]
    with atomic_write(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    return js, md


def main(args, log=print) -> int:
    """The ``reproduce iwae`` command (see :func:`vae_numpy.cli.build_parser`)."""
    from .errors import InputError

    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1; got {args.epochs}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.eval_k < 1:
        raise InputError(f"--eval-k must be >= 1; got {args.eval_k}")
    for name in ("limit", "eval_limit"):
        value = getattr(args, name)
        if value is not None and value < 2:
            raise InputError(f"--{name.replace('_', '-')} must be >= 2; got {value}")
    schedule = args.schedule or ("paper" if args.epochs >= PAPER_EPOCHS else "short")
    work, out = Path(args.work), Path(args.results)
    command = " ".join(["python -m vae_numpy", *args.argv_echo])
    for row in args.rows:
        run_row(row, work=work, epochs=args.epochs, batch_size=args.batch_size,
                schedule=schedule, eval_k=args.eval_k, seed=args.seed, limit=args.limit,
                eval_limit=args.eval_limit, progress=not args.no_progress, log=log,
                command=command)
    finished = []
    for row in PAPER_ROWS:
        f = work / row / "result.json"
        if f.is_file():
            finished.append(json.loads(f.read_text()))
    js, md = write_results(finished, out)
    log(f"wrote {js} and {md} ({len(finished)} of {len(PAPER_ROWS)} rows finished)")
    return 0
