"""``python -m vae_numpy bench``: how fast is the NumPy VAE, and against what?

One run trains the same model, on the same data with the same batch size and
thread count, along several paths, one epoch of each in turn (interleaved, so a
change in the machine's load hits all of them alike), and reports the median
seconds per epoch:

``numba``
    the library as it trains by default: :class:`vae_numpy.fused.FusedStep`
    (BLAS GEMMs, numba kernels around them, preallocated buffers) and the fused
    Adam (:func:`vae_numpy.kernels.adam_update`);
``reference``
    the readable path the book teaches (backend ``numpy-ref``):
    :meth:`VAE.forward`, :meth:`VAE.backward` and Adam in plain NumPy;
``gemm``
    the GEMMs alone, at the model's shapes and batch sizes, with nothing around
    them: the floor no implementation that uses these BLAS calls can go below;
``jax``
    the same model in JAX: the whole training step (forward, loss, backward by
    ``jax.grad``, Adam written inline) as one ``jax.jit``-compiled function, in
    float32, from the same initial weights, on the same batches with the same
    noise as ``numba`` (only when ``jax`` imports; like PyTorch it is never a
    dependency of this package);
``torch``
    PyTorch's CPU build with the same architecture, initialization scheme,
    loss, Adam settings, batch and thread count (only when ``torch`` imports;
    it is never a dependency of this package), in its default configuration;
``torch-fused``
    the same with ``torch.optim.Adam(fused=True)``, PyTorch's fastest Adam on the
    CPU (not its default), so the comparison does not rest on a slow optimizer;
``torch-fused-flush``
    fused Adam and ``torch.set_flush_denormal(True)``: PyTorch's best CPU
    configuration. Adam's first moment of a weight whose gradient stays 0 decays
    into subnormal floats, and in float32 ``0.9 * m`` stops shrinking there, so
    without the flush PyTorch's later epochs compute on more and more of them
    (the per-epoch times and the per-epoch count of subnormal moments show it).

Each PyTorch row trains in a process of its own (:class:`_TorchWorker`), driven
epoch by epoch from here, so the interleaving is the same as for the other
paths. That is how the flush stays out of every other row: it is a setting of
each thread's floating-point unit (MXCSR), which ``set_flush_denormal`` sets for
the calling thread only, and which threads inherit when they are created. The
flush row's process sets it first thing, before PyTorch starts its threads, so
all of them flush (as in a program that sets it at the start); the default
rows' processes never set it, and this process never does. Each row reports the
share of a parallel PyTorch operation that flushed (``flushed_share``), measured
in its own process.

It also times every GEMM shape of the model in BLAS and in the numba matmuls of
:mod:`vae_numpy.kernels`, measures compilation (cold and from the cache) and
peak memory in fresh processes, and writes ``bench.md`` and ``bench.json``.

Nothing here asserts a speed: the tests check correctness, this measures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PATHS = ("numba", "reference", "gemm", "jax", "torch", "torch-fused", "torch-fused-flush")
# The PyTorch rows: fused Adam, and flush denormals (torch.set_flush_denormal(True)).
TORCH_ROWS = {"torch": {"fused": False, "flush": False},
              "torch-fused": {"fused": True, "flush": False},
              "torch-fused-flush": {"fused": True, "flush": True}}
# Variants of the fused path that the library measured and left out (vae_numpy.fused's
# docstring): run on request, ``bench --paths numba,numba-compact,numba-threads``.
VARIANTS = {
    "numba-compact": {"first_layer": "compact"},   # gather only the non-zero columns
    "numba-threads": {"threads": 2},               # loss kernel and Adam on two threads
}
ALL_PATHS = PATHS + tuple(VARIANTS)
PHASES = ("data", "forward", "loss", "backward", "optimizer")


# -- the machine ---------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info() -> dict:
    """BLAS library, version, threads and kernel (``threadpoolctl`` when installed)."""
    info: dict = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info.update(name=blas.get("name"), version=blas.get("version"))
    except Exception:  # older NumPy: show_config has no dicts mode
        pass
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                info.update(internal_api=pool.get("internal_api"),
                            threads=pool.get("num_threads"),
                            architecture=pool.get("architecture"),
                            library_version=pool.get("version"))
                break
    except ImportError:
        info.update(_openblas_query())
    return info


def _openblas_query() -> dict:
    """Threads and kernel from NumPy's bundled scipy-openblas itself, through ctypes:
    what threadpoolctl reads, for when it is not installed."""
    import ctypes
    import glob

    libs = glob.glob(os.path.join(os.path.dirname(np.__path__[0]), "numpy.libs",
                                  "libscipy_openblas*.so*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            for suffix in ("64_", ""):
                threads = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
                core = getattr(lib, f"scipy_openblas_get_corename{suffix}", None)
                if threads is not None and core is not None:
                    core.restype = ctypes.c_char_p
                    return {"threads": int(threads()), "architecture": core().decode(),
                            "source": f"asked {os.path.basename(path)} through ctypes"}
        except OSError:
            continue
    return {"note": "threadpoolctl not installed and NumPy's OpenBLAS not found: BLAS "
                    "threads and kernel not read"}


def blas_threads() -> int:
    """How many threads NumPy's BLAS uses (threadpoolctl, else the environment, else cores)."""
    t = _blas_info().get("threads")
    if t:
        return int(t)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, BLAS, versions, date, load."""
    import numba

    try:
        import scipy

        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = None
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scipy": scipy_version,
        "blas": _blas_info(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        info["jax"] = None
    return info


# -- counting the work ---------------------------------------------------------------
@dataclass(frozen=True)
class Gemm:
    """One GEMM of a training step: ``out (m, n) = A (m, k) @ B (k, n)``."""

    name: str
    m: int
    k: int
    n: int
    trans_a: bool = False     # A is stored transposed (``x.T``)
    trans_b: bool = False     # B is stored transposed (``W.T``)
    phase: str = "forward"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def gemm_shapes(config, batch: int) -> list[Gemm]:
    """Every GEMM of one training step of a VAE/AE, as the fused step calls them.

    Per layer ``(fan_in, fan_out)``: forward ``h @ W``; backward the weight
    gradient ``h.T @ da`` and, except for the first layer, the input gradient
    ``da @ W.T``. The two heads of the VAE are one GEMM of width 2K.
    """
    D, K = config.input_dim, config.latent_dim
    hid = tuple(config.hidden_dims)
    head = 2 * K if config.kind == "vae" else K
    layers = []  # (name, fan_in, fan_out, needs input gradient)
    sizes = (D, *hid)
    for i in range(len(hid)):
        layers.append((f"enc{i + 1}", sizes[i], sizes[i + 1], i > 0))
    layers.append(("heads" if config.kind == "vae" else "code", hid[-1], head, True))
    dec = (K, *reversed(hid))
    for i in range(len(hid)):
        layers.append((f"dec{i + 1}", dec[i], dec[i + 1], True))
    layers.append(("out", hid[0], D, True))
    out = []
    for name, fi, fo, _ in layers:
        out.append(Gemm(f"{name}: h @ W", batch, fi, fo, phase="forward"))
    for name, fi, fo, input_grad in reversed(layers):
        out.append(Gemm(f"{name}: h.T @ da", fi, batch, fo, trans_a=True, phase="backward"))
        if input_grad:
            out.append(Gemm(f"{name}: da @ W.T", batch, fo, fi, trans_b=True, phase="backward"))
    return out


def flops_per_example(config) -> dict:
    """Forward, weight-gradient and input-gradient FLOPs of one example (2 per multiply-add)."""
    shapes = gemm_shapes(config, 1)
    fwd = sum(g.flops for g in shapes if g.phase == "forward")
    wgrad = sum(g.flops for g in shapes if g.trans_a)
    igrad = sum(g.flops for g in shapes if g.trans_b)
    return {"forward": fwd, "weight_grad": wgrad, "input_grad": igrad,
            "total": fwd + wgrad + igrad}


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    return [min(batch_size, n - s) for s in range(0, n, batch_size)]


# -- the four paths, one epoch at a time -----------------------------------------------
@dataclass
class _Path:
    name: str
    epochs: list = field(default_factory=list)        # seconds per epoch
    subnormals: list = field(default_factory=list)    # Adam's moments after each epoch
    phases: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    note: str = ""


class _NumpyPath:
    """The library training the model: the loop of :func:`vae_numpy.train.fit`, with timers.

    The loop draws from ``rng`` exactly as ``fit`` does (the permutation of
    :func:`vae_numpy.data.minibatches`, then ``model.noise`` per batch), so one
    epoch here gives the same parameters, bit for bit, as one epoch of ``fit``.
    """

    def __init__(self, backend: str, config, x, batch_size: int, seed: int,
                 variant: dict | None = None):
        from .model import make_model
        from .train import make_optimizer

        self.model = make_model(config, np.random.default_rng(seed), backend=backend)
        self.optimizer = make_optimizer(self.model, "adam", 1e-3)
        self.rng = np.random.default_rng(seed)
        self.x = x
        self.batch_size = batch_size
        self.fused = None
        self.threads = (variant or {}).get("threads")
        if backend == "numpy":
            from .fused import FusedStep, fused_step_for

            self.fused = fused_step_for(self.model)
            if variant:
                self.fused = self.model.__dict__["_fused_step"] = FusedStep(
                    self.model, **variant)

    def epoch(self, phases: dict) -> float:
        from . import losses
        from .data import minibatches

        model, opt, x, rng = self.model, self.optimizer, self.x, self.rng
        clock = time.perf_counter
        if self.fused is not None:
            self.fused.profile = phases
        if self.threads is not None:   # Adam reads VAE_NUMPY_THREADS at every step
            saved_threads = os.environ.get("VAE_NUMPY_THREADS")
            os.environ["VAE_NUMPY_THREADS"] = str(self.threads)
        loss_time = [0.0]

        def timed(fn):
            def wrapper(*args, **kwargs):
                t = clock()
                try:
                    return fn(*args, **kwargs)
                finally:
                    loss_time[0] += clock() - t
            return wrapper

        # the reference path: time the loss functions inside forward/backward
        patched = {}
        if self.fused is None:
            for name in ("bernoulli_nll", "bernoulli_nll_backward", "kl_divergence",
                         "kl_divergence_backward"):
                patched[name] = getattr(losses, name)
                setattr(losses, name, timed(patched[name]))
        try:
            t_epoch = clock()
            n = x.shape[0]
            for idx in minibatches(n, self.batch_size, rng):
                t0 = clock()
                xb = x[idx]
                eps = model.noise(xb.shape[0], rng)
                t1 = clock()
                phases["data"] += t1 - t0
                if self.fused is not None:
                    _, terms, grads = model.loss_and_grads(xb, eps, check=False)
                    t2 = clock()
                else:
                    loss_time[0] = 0.0
                    _, terms, cache = model.forward(xb, eps, check=False)
                    t_mid = clock()
                    lf = loss_time[0]
                    grads = model.backward(cache)
                    t2 = clock()
                    lb = loss_time[0] - lf
                    phases["forward"] += t_mid - t1 - lf
                    phases["backward"] += t2 - t_mid - lb
                    phases["loss"] += lf + lb
                if not math.isfinite(terms["loss"]):
                    raise FloatingPointError("the benchmark's training diverged")
                opt.step(grads)
                phases["optimizer"] += clock() - t2
            return clock() - t_epoch
        finally:
            for name, fn in patched.items():
                setattr(losses, name, fn)
            if self.fused is not None:
                self.fused.profile = None
            if self.threads is not None:
                if saved_threads is None:
                    os.environ.pop("VAE_NUMPY_THREADS", None)
                else:
                    os.environ["VAE_NUMPY_THREADS"] = saved_threads

    def adam_subnormals(self) -> dict:
        """Subnormal counts in Adam's moments ``m`` and ``v`` (see :func:`subnormal_count`)."""
        return _moment_counts((s["m"], s["v"]) for s in self.optimizer.state.values()
                              if "m" in s)


class _GemmPath:
    """The GEMMs of every step of an epoch, into preallocated outputs, and nothing else."""

    def __init__(self, config, n: int, batch_size: int, seed: int):
        rng = np.random.default_rng(seed)
        self.steps = []
        cache = {}
        for b in _batch_sizes(n, batch_size):
            if b not in cache:
                ops = []
                for g in gemm_shapes(config, b):
                    a = rng.standard_normal((g.k, g.m) if g.trans_a else (g.m, g.k),
                                            dtype=np.float32)
                    w = rng.standard_normal((g.n, g.k) if g.trans_b else (g.k, g.n),
                                            dtype=np.float32)
                    ops.append((a.T if g.trans_a else a, w.T if g.trans_b else w,
                                np.empty((g.m, g.n), np.float32), g.phase))
                # timed by each product's own phase (gemm_shapes interleaves them by layer)
                cache[b] = {phase: [op for op in ops if op[3] == phase]
                            for phase in ("forward", "backward")}
            self.steps.append(cache[b])

    def epoch(self, phases: dict) -> float:
        clock = time.perf_counter
        matmul = np.matmul
        t_epoch = clock()
        for ops in self.steps:
            t0 = clock()
            for a, w, out, _ in ops["forward"]:
                matmul(a, w, out=out)
            t1 = clock()
            for a, w, out, _ in ops["backward"]:
                matmul(a, w, out=out)
            t2 = clock()
            phases["forward"] += t1 - t0
            phases["backward"] += t2 - t1
        return clock() - t_epoch


class _TorchPath:
    """The same VAE in PyTorch (CPU), trained the way its examples train it."""

    def __init__(self, config, x, batch_size: int, seed: int, threads: int,
                 fused_adam: bool = False):
        import torch
        from torch import nn

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.torch = torch
        D, K = config.input_dim, config.latent_dim
        hid = tuple(config.hidden_dims)

        def mlp(sizes, last_relu):
            layers = []
            for i in range(len(sizes) - 1):
                layers.append(nn.Linear(sizes[i], sizes[i + 1]))
                if i < len(sizes) - 2 or last_relu:
                    layers.append(nn.ReLU())
            return nn.Sequential(*layers)

        # nn.Linear's default initialization is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W
        # and b, as vae_numpy's
        self.encoder = mlp((D, *hid), True)
        self.heads = nn.Linear(hid[-1], 2 * K) if config.kind == "vae" else None
        self.K = K
        self.decoder = mlp((K, *reversed(hid), D), False)
        self.params = [*self.encoder.parameters(), *self.heads.parameters(),
                       *self.decoder.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=1e-3,
                                          **({"fused": True} if fused_adam else {}))
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.beta = config.beta

    def _forward(self, xb, eps):
        h = self.encoder(xb)
        mu, log_var = self.heads(h).split(self.K, dim=1)
        z = mu + self.torch.exp(0.5 * log_var) * eps
        x_logits = self.decoder(z)
        return x_logits, mu, log_var

    def epoch(self, phases: dict) -> float:
        from .data import minibatches

        torch = self.torch
        F = torch.nn.functional
        clock = time.perf_counter
        t_epoch = clock()
        n = self.x.shape[0]
        for idx in minibatches(n, self.batch_size, self.rng):
            t0 = clock()
            xb = self.x[torch.from_numpy(idx)]
            eps = torch.randn(xb.shape[0], self.K, generator=self.gen)
            t1 = clock()
            x_logits, mu, log_var = self._forward(xb, eps)
            t2 = clock()
            b = xb.shape[0]
            rec = F.binary_cross_entropy_with_logits(x_logits, xb, reduction="sum") / b
            kl = 0.5 * (mu * mu + torch.expm1(log_var) - log_var).sum() / b
            loss = rec + self.beta * kl
            t3 = clock()
            loss.backward()
            t4 = clock()
            if not math.isfinite(loss.item()):
                raise FloatingPointError("the benchmark's PyTorch training diverged")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            t5 = clock()
            phases["data"] += t1 - t0
            phases["forward"] += t2 - t1
            phases["loss"] += t3 - t2
            phases["backward"] += t4 - t3
            phases["optimizer"] += t5 - t4
        return clock() - t_epoch

    def test_loss(self, x_test, seed: int = 2013) -> float:
        torch = self.torch
        F = torch.nn.functional
        gen = torch.Generator().manual_seed(seed)
        total = 0.0
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x_test))
            for s in range(0, xt.shape[0], 1000):
                xb = xt[s:s + 1000]
                eps = torch.randn(xb.shape[0], self.K, generator=gen)
                x_logits, mu, log_var = self._forward(xb, eps)
                rec = F.binary_cross_entropy_with_logits(x_logits, xb, reduction="sum")
                kl = 0.5 * (mu * mu + torch.expm1(log_var) - log_var).sum()
                total += float(rec + self.beta * kl)
        return total / xt.shape[0]


def _torch_flushed_share(torch) -> float:
    """The share of a parallel PyTorch multiply (on all its threads) that flushed subnormals.

    The subnormal inputs are made from their bits (an integer fill): a float fill would
    itself be flushed on this thread, and the probe would see zeros whatever the others do.
    """
    x = torch.full((1 << 20,), 1 << 21, dtype=torch.int32).view(torch.float32)  # 2.9e-39
    y = x * torch.tensor(1.0)
    return float((y == 0).double().mean())


def _torch_worker(spec: dict) -> None:
    """The PyTorch row's own process: build the row, then train an epoch per ``epoch`` line.

    Started by :class:`_TorchWorker`, which has already set the flush (first thing,
    before PyTorch starts a thread) when ``spec["flush"]``. Replies are JSON lines
    after ``@@ ``.
    """
    import torch

    from .model import ModelConfig

    def reply(obj):
        sys.stdout.write("@@ " + json.dumps(obj) + "\n")
        sys.stdout.flush()

    config = ModelConfig.from_json(spec["config"])
    x = np.load(spec["x"])
    bs, seed, threads = spec["batch_size"], spec["seed"], spec["threads"]
    path = _TorchPath(config, x, bs, seed, threads, fused_adam=spec["fused"])
    _TorchPath(config, x[:4 * bs], bs, seed + 1, threads, fused_adam=spec["fused"]).epoch(
        dict.fromkeys(PHASES, 0.0))  # warm-up on a throwaway copy
    reply({"ready": True, "torch": torch.__version__,
           "flushed_share": _torch_flushed_share(torch)})
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "epoch":
            phases = dict.fromkeys(PHASES, 0.0)
            seconds = path.epoch(phases)
            state = path.optimizer.state
            counts = _moment_counts((state[q]["exp_avg"].numpy(), state[q]["exp_avg_sq"].numpy())
                                    for q in path.params if q in state)
            reply({"seconds": seconds, "phases": phases, "subnormals": counts,
                   "flushed_share": _torch_flushed_share(torch)})
        elif cmd == "test":
            reply({"test_loss": path.test_loss(np.load(spec["x_test"]))})
        else:
            return


_TORCH_WORKER_SCRIPT = r"""
import json, sys
spec = json.loads(sys.stdin.readline())
import torch
if spec["flush"]:
    torch.set_flush_denormal(True)   # before PyTorch's threads exist: they inherit it
from vae_numpy.bench import _torch_worker
_torch_worker(spec)
"""


class _TorchWorker:
    """A PyTorch row (:class:`_TorchPath`) in a process of its own, run one epoch at a time.

    ``fused`` picks ``Adam(fused=True)``, ``flush`` sets ``torch.set_flush_denormal(True)``
    in that process before PyTorch starts its threads. The epoch is timed inside the
    process, so the pipe costs nothing of it. ``data_dir`` holds ``x.npy`` (and
    ``x_test.npy``), written once for every worker.
    """

    def __init__(self, name: str, config, data_dir: Path, batch_size: int, seed: int,
                 threads: int, fused: bool, flush: bool):
        self.name = name
        spec = {"config": config.to_json(), "x": str(data_dir / "x.npy"),
                "x_test": str(data_dir / "x_test.npy"), "batch_size": batch_size,
                "seed": seed, "threads": threads, "fused": fused, "flush": flush}
        env = {**os.environ}
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self._err = open(data_dir / f"{name}.stderr", "w+")
        self.proc = subprocess.Popen([sys.executable, "-c", _TORCH_WORKER_SCRIPT],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, env=env)
        self.subnormals = []
        self.flushed_share = None
        self._send(json.dumps(spec))  # it starts now; ready() waits for it

    def ready(self) -> None:
        """Wait until the worker has built its row and warmed up."""
        if self.flushed_share is None:
            self.flushed_share = self._reply()["flushed_share"]

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _ask(self, line: str) -> dict:
        self.ready()
        self._send(line)
        return self._reply()

    def _reply(self) -> dict:
        for out in self.proc.stdout:
            if out.startswith("@@ "):
                return json.loads(out[3:])
        self._err.seek(0)
        raise RuntimeError(f"the {self.name} worker died: {self._err.read().strip()[-2000:]}")

    def epoch(self, phases: dict) -> float:
        r = self._ask("epoch")
        for k, v in r["phases"].items():
            phases[k] += v
        self.subnormals.append(r["subnormals"])
        self.flushed_share = r["flushed_share"]
        return r["seconds"]

    def adam_subnormals(self) -> dict:
        return self.subnormals[-1]

    def test_loss(self) -> float:
        return self._ask("test")["test_loss"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.communicate("quit\n", timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def _torch_available() -> tuple[bool, str]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False, "PyTorch is not installed (pip install torch): its rows are skipped"
    return True, ""


def _jax_available() -> tuple[bool, str]:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False, "JAX is not installed (pip install jax): its row is skipped"
    return True, ""


# -- subnormal numbers ------------------------------------------------------------------
TINY32 = float(np.finfo(np.float32).tiny)     # the smallest normal float32, 1.18e-38


def subnormal_count(a) -> int:
    """How many entries of ``a`` are subnormal: non-zero and smaller than :data:`TINY32`."""
    a = np.abs(np.asarray(a, dtype=np.float32))
    return int(np.count_nonzero((a > 0) & (a < TINY32)))


def denormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero (FTZ or DAZ set in its MXCSR).

    NumPy's multiply runs on the calling thread, so a subnormal times 1 reads back
    as 0 exactly when that thread flushes (``torch.set_flush_denormal(True)`` sets
    both flags, for the calling thread only).
    """
    a = np.full(8, 1 << 21, np.int32).view(np.float32)   # a subnormal, from its bits
    return bool((a * np.float32(1.0))[0] == 0)


def _moment_counts(pairs) -> dict:
    """Subnormal counts of Adam's moments: ``pairs`` yields (m, v) arrays, one per tensor."""
    m = v = size = 0
    for mi, vi in pairs:
        m += subnormal_count(mi)
        v += subnormal_count(vi)
        size += int(np.size(mi))
    return {"m": m, "v": v, "size": size}


# -- JAX: the whole step under jax.jit ------------------------------------------------
def jax_params(model) -> dict:
    """A NumPy VAE's parameters as the JAX step's pytree (``jax.numpy`` arrays).

    The two heads are one matrix of width 2K (``[W_mu | W_log_var]``), as in the
    fused step and in PyTorch; Adam is elementwise, so this changes no number.
    """
    import jax.numpy as jnp

    p, n = model.params, len(model.config.hidden_dims)
    return {
        "enc": [(jnp.asarray(p[f"enc.W{i}"]), jnp.asarray(p[f"enc.b{i}"]))
                for i in range(1, n + 1)],
        "heads": (jnp.asarray(np.concatenate([p["enc.W_mu"], p["enc.W_log_var"]], axis=1)),
                  jnp.asarray(np.concatenate([p["enc.b_mu"], p["enc.b_log_var"]]))),
        "dec": [(jnp.asarray(p[f"dec.W{i}"]), jnp.asarray(p[f"dec.b{i}"]))
                for i in range(1, n + 1)],
        "out": (jnp.asarray(p["dec.W_out"]), jnp.asarray(p["dec.b_out"])),
    }


def numpy_params(tree, latent_dim: int) -> dict:
    """The inverse of :func:`jax_params`: name -> NumPy array, as ``model.load_params`` takes."""
    out = {}
    for i, (W, b) in enumerate(tree["enc"], 1):
        out[f"enc.W{i}"], out[f"enc.b{i}"] = np.asarray(W), np.asarray(b)
    W, b = (np.asarray(a) for a in tree["heads"])
    out.update({"enc.W_mu": W[:, :latent_dim], "enc.b_mu": b[:latent_dim],
                "enc.W_log_var": W[:, latent_dim:], "enc.b_log_var": b[latent_dim:]})
    for i, (W, b) in enumerate(tree["dec"], 1):
        out[f"dec.W{i}"], out[f"dec.b{i}"] = np.asarray(W), np.asarray(b)
    out["dec.W_out"], out["dec.b_out"] = (np.asarray(a) for a in tree["out"])
    return out


def jax_loss(params, x, eps, beta: float = 1.0):
    """The VAE's loss in JAX: ``mean(rec + beta * kl)``, as :meth:`VAE.forward` computes it.

    Bernoulli decoder from the logits (``softplus(l) - x l`` summed over pixels),
    the closed-form KL with ``expm1``, ReLU hidden layers.
    """
    import jax
    import jax.numpy as jnp

    h = x
    for W, b in params["enc"]:
        h = jax.nn.relu(h @ W + b)
    W, b = params["heads"]
    a = h @ W + b
    K = eps.shape[1]
    mu, log_var = a[:, :K], a[:, K:]
    h = mu + jnp.exp(0.5 * log_var) * eps
    for W, b in params["dec"]:
        h = jax.nn.relu(h @ W + b)
    W, b = params["out"]
    logits = h @ W + b
    rec = jnp.sum(jax.nn.softplus(logits) - x * logits, axis=1)
    kl = 0.5 * jnp.sum(mu * mu + jnp.expm1(log_var) - log_var, axis=1)
    return jnp.mean(rec + beta * kl)


def jax_train_step(beta: float = 1.0, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8):
    """``step(params, m, v, t, x, noise) -> (params, m, v, loss)``, one ``jax.jit`` function.

    Forward, loss, backward (``jax.value_and_grad``) and Adam with PyTorch's
    defaults, written inline as :func:`vae_numpy.kernels.adam_update_reference`
    computes it (no flush of small moments). ``params``, ``m`` and ``v`` are
    donated: XLA may update them in place, so the caller must use the returned ones.
    """
    import jax
    import jax.numpy as jnp

    value_and_grad = jax.value_and_grad(lambda p, x, e: jax_loss(p, x, e, beta))
    tree_map = jax.tree_util.tree_map

    def step(params, m, v, t, x, noise):
        loss, g = value_and_grad(params, x, noise)
        m = tree_map(lambda mi, gi: b1 * mi + (1.0 - b1) * gi, m, g)
        v = tree_map(lambda vi, gi: b2 * vi + (1.0 - b2) * (gi * gi), v, g)
        step_size = lr / (1.0 - b1 ** t)
        scale = 1.0 / jnp.sqrt(1.0 - b2 ** t)
        params = tree_map(lambda p, mi, vi: p - step_size * mi / (jnp.sqrt(vi) * scale + eps),
                          params, m, v)
        return params, m, v, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


class _JaxPath:
    """The model in JAX, one compiled step per batch, on the batches and noise of ``numba``.

    The initial weights are those of :func:`vae_numpy.model.make_model` from ``seed``
    (the rule and the numbers of the NumPy paths), and the loop draws from ``rng`` as
    :class:`_NumpyPath` does: the same permutation, the same noise. The step runs
    asynchronously (JAX's dispatch: Python prepares the next batch while XLA computes),
    so an epoch ends when its last step has finished, and its phases other than
    ``data`` cannot be told apart: they are one compiled function. XLA runs it on its
    own thread pool, which this benchmark does not size (the BLAS thread count is not
    passed to it).
    """

    note = "one jit-compiled function per step: forward, loss, backward and Adam together"

    def __init__(self, config, x, batch_size: int, seed: int):
        import jax
        import jax.numpy as jnp

        from .model import make_model

        if config.kind != "vae" or config.likelihood != "bernoulli" or \
                config.activation != "relu":
            raise ValueError("the JAX path is the default VAE's: a Bernoulli VAE with ReLUs")
        self.jax = jax
        self.model = make_model(config, np.random.default_rng(seed), backend="numpy-ref")
        self.params = jax_params(self.model)
        self.m = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.v = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.t = 0
        self.step = jax_train_step(config.beta)
        self.x = x
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        # compile for every batch size of an epoch now, on copies (the step donates them)
        D, K = config.input_dim, config.latent_dim
        for b in sorted(set(_batch_sizes(x.shape[0], batch_size))):
            state = jax.tree_util.tree_map(jnp.array, (self.params, self.m, self.v))
            jax.block_until_ready(self.step(*state, np.float32(1), np.zeros((b, D), np.float32),
                                            np.zeros((b, K), np.float32)))

    def epoch(self, phases: dict) -> float:
        from .data import minibatches

        clock = time.perf_counter
        model, x, rng, step = self.model, self.x, self.rng, self.step
        losses = []
        t_epoch = clock()
        for idx in minibatches(x.shape[0], self.batch_size, rng):
            t0 = clock()
            xb = x[idx]
            eps = model.noise(xb.shape[0], rng)
            phases["data"] += clock() - t0
            self.t += 1
            self.params, self.m, self.v, loss = step(self.params, self.m, self.v,
                                                     np.float32(self.t), xb, eps)
            losses.append(loss)
        self.jax.block_until_ready((self.params, self.m, self.v))
        seconds = clock() - t_epoch
        if not np.isfinite(np.asarray(losses)).all():
            raise FloatingPointError("the benchmark's JAX training diverged")
        return seconds

    def trained_model(self):
        """The NumPy model holding the JAX path's current parameters (to evaluate it)."""
        self.model.load_params(numpy_params(self.params, self.model.config.latent_dim))
        return self.model

    def adam_subnormals(self) -> dict:
        leaves = self.jax.tree_util.tree_leaves
        return _moment_counts(zip(leaves(self.m), leaves(self.v)))


def _warm_up(config, x, batch_size: int) -> None:
    """Compile the kernels and touch BLAS before timing (on a throwaway model)."""
    from .fused import fused_step_for
    from .model import make_model
    from .train import make_optimizer

    for b in sorted(set(_batch_sizes(x.shape[0], batch_size)))[:2] or [batch_size]:
        model = make_model(config, np.random.default_rng(123))
        step = fused_step_for(model)
        opt = make_optimizer(model)
        xb = np.ascontiguousarray(x[:b])
        eps = model.noise(b, np.random.default_rng(0))
        for _ in range(2):
            (step or model.loss_and_grads)(xb, eps, check=False)
            opt.step(model.grads)


# -- quick measurements, for the book --------------------------------------------------
def gemm_times(config, batch: int = 128, reps: int = 20, seed: int = 0) -> list[dict]:
    """Median seconds of each BLAS GEMM of one training step (see :func:`gemm_shapes`).

    Each row: ``name``, ``shape``, ``flops``, ``seconds``, ``gflops``. The GEMMs run in
    turn, ``reps`` rounds, into preallocated outputs.
    """
    rng = np.random.default_rng(seed)
    fns, shapes = {}, gemm_shapes(config, batch)
    for i, g in enumerate(shapes):
        a = rng.standard_normal((g.k, g.m) if g.trans_a else (g.m, g.k), dtype=np.float32)
        w = rng.standard_normal((g.n, g.k) if g.trans_b else (g.k, g.n), dtype=np.float32)
        out = np.empty((g.m, g.n), np.float32)
        fns[i] = (lambda a=a.T if g.trans_a else a, w=w.T if g.trans_b else w, o=out:
                  np.matmul(a, w, out=o))
    med = time_interleaved(fns, reps)
    return [{"name": g.name, "shape": f"{g.m} x {g.k} x {g.n}", "flops": g.flops,
             "seconds": med[i], "gflops": g.flops / med[i] / 1e9}
            for i, g in enumerate(shapes)]


def profile(backend: str, x, *, batch_size: int = 128, seed: int = 0, config=None) -> dict:
    """Train one epoch over ``x`` on ``backend`` and return seconds per step, by phase.

    ``backend`` is ``"numpy"`` (the fused numba path) or ``"numpy-ref"``. Returns a
    dict with the phases of :data:`PHASES`, ``"other"`` (the loop itself) and
    ``"total"``, each in seconds per step. Kernels are compiled beforehand.
    """
    from .model import ModelConfig

    config = ModelConfig() if config is None else config
    _warm_up(config, x, batch_size)
    path = _NumpyPath(backend, config, x, batch_size, seed)
    phases = dict.fromkeys(PHASES, 0.0)
    total = path.epoch(phases)
    steps = len(_batch_sizes(x.shape[0], batch_size))
    out = {k: v / steps for k, v in phases.items()}
    out["other"] = max(0.0, total / steps - sum(out.values()))
    out["total"] = total / steps
    return out


# -- the GEMM table: BLAS against numba at every shape ---------------------------------
def time_interleaved(fns: dict, reps: int) -> dict:
    """Median seconds of each callable, called once to warm up, then in turn ``reps`` times."""
    times = {k: [] for k in fns}
    clock = time.perf_counter
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def _gemm_row(name: str, shape: str, flops: int, t: dict, ref, out) -> dict:
    """One row of the GEMM table: timings ``t`` and the numba result's relative error."""
    return {"name": name, "shape": shape, "flops": flops, "blas_s": t["blas"],
            "numba_s": t["numba"], "ratio": t["numba"] / t["blas"], "library": "BLAS",
            "rel_err": float(np.abs(ref - out).max() / max(np.abs(ref).max(), 1e-30))}


def gemm_table(config, batch: int = 128, reps: int = 30, x=None, seed: int = 0) -> list[dict]:
    """BLAS and the numba matmul at every GEMM shape of a step, plus the fused candidates.

    Each row: ``name``, ``shape`` (m x k x n), ``flops``, ``blas_s``, ``numba_s``
    (median seconds), ``ratio`` (numba / BLAS) and ``library`` (which one the
    fused step uses). ``x`` (N, D) real images make the sparse rows honest (MNIST
    is 81% zeros); random sparse data of that density is used when None.
    """
    from . import kernels as K

    rng = np.random.default_rng(seed)
    rows = []
    for g in gemm_shapes(config, batch):
        a = rng.standard_normal((g.k, g.m) if g.trans_a else (g.m, g.k), dtype=np.float32)
        w = rng.standard_normal((g.n, g.k) if g.trans_b else (g.k, g.n), dtype=np.float32)
        a = a.T if g.trans_a else a
        w = w.T if g.trans_b else w
        o1 = np.empty((g.m, g.n), np.float32)
        o2 = np.empty((g.m, g.n), np.float32)
        scratch = np.empty(w.shape, np.float32)
        t = time_interleaved({
            "blas": lambda a=a, w=w, o=o1: np.matmul(a, w, out=o),
            "numba": lambda a=a, w=w, o=o2, s=scratch: K.matmul_numba(a, w, o, scratch=s),
        }, reps)
        rows.append(_gemm_row(g.name, f"{g.m} x {g.k} x {g.n}", g.flops, t, o1, o2))

    # fused candidates: a GEMM with its bias and ReLU, output written once
    D, Kz, H = config.input_dim, config.latent_dim, config.hidden_dims[-1]
    H1 = config.hidden_dims[0]
    z = rng.standard_normal((batch, Kz), dtype=np.float32)
    W = rng.standard_normal((Kz, H), dtype=np.float32)
    b = rng.standard_normal(H, dtype=np.float32)
    o1 = np.empty((batch, H), np.float32)
    o2 = np.empty((batch, H), np.float32)
    t = time_interleaved({
        "blas": lambda: K.matmul_bias_act_reference(z, W, b, o1, True),
        "numba": lambda: K.matmul_bias_act(z, W, b, o2, True),
    }, reps)
    rows.append(_gemm_row("dec1: relu(z @ W + b), fused", f"{batch} x {Kz} x {H}",
                          2 * batch * Kz * H, t, o1, o2))
    # sparse-aware first layer: only the non-zero pixels are read
    if x is None:
        x = (rng.random((batch, D), dtype=np.float32)
             * (rng.random((batch, D)) < 0.19)).astype(np.float32)
    xb = np.ascontiguousarray(x[:batch])
    W1 = rng.standard_normal((D, H1), dtype=np.float32) * 0.05
    b1 = rng.standard_normal(H1, dtype=np.float32) * 0.05
    da = rng.standard_normal((batch, H1), dtype=np.float32)
    o1 = np.empty((batch, H1), np.float32)
    o2 = np.empty((batch, H1), np.float32)
    d1 = np.empty((D, H1), np.float32)
    d2 = np.empty((D, H1), np.float32)
    bufs = (np.empty(batch + 1, np.int64), np.empty(xb.size, np.int32),
            np.empty(xb.size, np.float32))
    t = time_interleaved({
        "blas": lambda: K.matmul_bias_act_reference(xb, W1, b1, o1, True),
        "numba": lambda: K.spmm_bias_act(K.csr_from_dense(xb, *bufs), W1, b1, o2, True),
    }, reps)
    density = float(np.count_nonzero(xb)) / xb.size
    rows.append(_gemm_row(f"enc1: relu(x @ W + b), sparse x ({density:.0%} non-zero)",
                          f"{batch} x {D} x {H1}", 2 * batch * D * H1, t, o1, o2))
    t = time_interleaved({
        "blas": lambda: np.matmul(xb.T, da, out=d1),
        "numba": lambda: K.spmm_tn(K.csr_from_dense(xb, *bufs), da, d2),
    }, reps)
    rows.append(_gemm_row("enc1: x.T @ da, sparse x", f"{D} x {batch} x {H1}",
                          2 * batch * D * H1, t, d1, d2))
    from .fused import NUMBA_GEMMS

    for row in rows:
        # what the fused step uses (fixed in vae_numpy.fused.NUMBA_GEMMS, from this table)
        if "dec1" in NUMBA_GEMMS and row["name"].startswith("dec1: relu"):
            row["library"] = "numba"
        elif row["name"].startswith("dec1: h @ W") and "dec1" in NUMBA_GEMMS:
            row["library"] = "numba (fused row below)"
    return rows


# -- compile time and memory, in fresh processes ----------------------------------------
_COMPILE_SCRIPT = r"""
import time, json
t0 = time.perf_counter()
import numpy as np
from vae_numpy.model import VAE
from vae_numpy.train import make_optimizer
t1 = time.perf_counter()
model = VAE(rng=0)
opt = make_optimizer(model)
x = np.random.default_rng(0).random((128, 784), dtype=np.float32)
eps = model.noise(128, np.random.default_rng(1))
t2 = time.perf_counter()
model.loss_and_grads(x, eps, check=False)
opt.step(model.grads)
t3 = time.perf_counter()
model.loss_and_grads(x, eps, check=False)
opt.step(model.grads)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_step_s": t3 - t2, "second_step_s": t4 - t3}))
"""


def _run_python(code: str, env: dict | None = None, timeout: float = 600) -> dict:
    full_env = {**os.environ, **(env or {})}
    root = str(Path(__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full_env, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"subprocess failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def compile_times() -> dict:
    """First training step in a fresh process: with numba's cache cold, then warm.

    The cold run points ``NUMBA_CACHE_DIR`` at an empty folder, so every kernel
    the step uses is compiled; the warm runs load them from that folder.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vae-numba-cache-") as tmp:
        env = {"NUMBA_CACHE_DIR": tmp, "VAE_NUMPY_BACKEND": "numpy"}
        cold = _run_python(_COMPILE_SCRIPT, env)
        warm = _run_python(_COMPILE_SCRIPT, env)
        warm2 = _run_python(_COMPILE_SCRIPT, env)
    # compilation = first step minus an ordinary step
    return {
        "cold_s": cold["first_step_s"] - cold["second_step_s"],
        "warm_s": min(warm["first_step_s"] - warm["second_step_s"],
                      warm2["first_step_s"] - warm2["second_step_s"]),
        "import_s": min(warm["import_s"], warm2["import_s"]),
        "cold_first_step_s": cold["first_step_s"],
        "warm_first_step_s": min(warm["first_step_s"], warm2["first_step_s"]),
    }


_MEMORY_SCRIPT = r"""
import json, sys, tracemalloc
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0
import numpy as np
from vae_numpy.data import load_mnist, minibatches
from vae_numpy.model import VAE
from vae_numpy.train import make_optimizer
backend, steps = BACKEND, STEPS
after_import = status("VmRSS")
try:
    x = load_mnist("train").x
except Exception:  # no MNIST here: the same shape and sparsity, synthetic
    rng = np.random.default_rng(0)
    x = (rng.random((60000, 784), dtype=np.float32) * (rng.random((60000, 784)) < 0.19))
    x = x.astype(np.float32)
after_data = status("VmRSS")
rng = np.random.default_rng(0)
model = VAE(rng=0, backend=backend)
opt = make_optimizer(model)
batches = minibatches(len(x), 128, rng)
for i in range(steps):
    xb = x[next(batches)]
    _, _, g = model.loss_and_grads(xb, model.noise(len(xb), rng), check=False)
    opt.step(g)
    if i == 0:
        after_first = status("VmRSS")
after_steps = status("VmRSS")
# what one step allocates and frees again (NumPy arrays and Python objects, traced),
# the batch and its noise drawn before the tracing starts
xbs = [x[next(batches)] for _ in range(10)]
epss = [model.noise(128, rng) for _ in range(10)]
tracemalloc.start()
start, _ = tracemalloc.get_traced_memory()
for xb, eps in zip(xbs, epss):
    _, _, g = model.loss_and_grads(xb, eps, check=False)
    opt.step(g)
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"after_import": after_import, "after_data": after_data,
                  "after_first_step": after_first, "after_steps": after_steps,
                  "peak_rss": status("VmHWM"), "step_temporaries": peak - start}))
"""


def peak_memory(steps: int = 100) -> dict:
    """Peak memory of training the default model on MNIST, in a fresh process per path.

    Reads the process's resident memory (``/proc/self/status``: ``VmRSS``, and
    ``VmHWM``, its peak) after the imports, after loading MNIST, after the first
    step (which compiles or loads the numba kernels) and after ``steps`` steps,
    and tracemalloc's peak of NumPy and Python allocations during 10 more steps:
    the temporaries a training step makes and frees again.
    """
    out = {}
    for backend in ("numpy", "numpy-ref"):
        code = _MEMORY_SCRIPT.replace("BACKEND, STEPS", f"{backend!r}, {int(steps)}")
        out[backend] = _run_python(code, {"VAE_NUMPY_BACKEND": backend})
    return out


# -- the whole run --------------------------------------------------------------------
def run_benchmark(*, epochs: int = 3, batch_size: int = 128, limit: int | None = None,
                  use_torch: bool = True, use_jax: bool = True, seed: int = 0,
                  gemm_reps: int = 30, extras: bool = True, x=None, x_test=None, log=print,
                  pause: float = 0.3, paths=PATHS) -> dict:
    """Train along the paths, ``epochs`` interleaved epochs each; return the results.

    Parameters
    ----------
    paths : sequence of str
        Which of :data:`ALL_PATHS` to run (JAX and the PyTorch rows only when they
        import): :data:`PATHS` by default, the :data:`VARIANTS` of the fused path on
        request.
    epochs : int
        Timed epochs per path (the median is reported; every epoch's time is kept,
        with the count of subnormal numbers in each path's Adam moments after it).
    limit : int, optional
        Train on the first ``limit`` MNIST images (quick runs; the default is all 60,000).
    use_torch, use_jax : bool
        Include PyTorch's rows, JAX's row, when they import.
    extras : bool
        Also measure compilation and peak memory (fresh processes) and the GEMM table.
    x, x_test : arrays, optional
        Data to use instead of MNIST.
    pause : float
        Seconds of rest between epochs, so threads left spinning by one library
        (OpenBLAS, PyTorch's OpenMP, XLA) have gone to sleep before the next is timed.
    """
    import tempfile

    from .model import ModelConfig

    unknown = [p for p in paths if p not in ALL_PATHS]
    if unknown:
        raise ValueError(f"unknown benchmark path(s) {unknown}; choose from "
                         f"{', '.join(ALL_PATHS)}")
    config = ModelConfig()
    if x is None:
        from .data import load_mnist

        x = load_mnist("train").x
        x_test = load_mnist("test").x if x_test is None else x_test
    if limit:
        x = x[:limit]
    n = x.shape[0]
    threads = blas_threads()
    result: dict = {"machine": machine_info(), "config": json.loads(config.to_json()),
                    "batch_size": batch_size, "examples": n, "epochs": epochs,
                    "threads": threads, "seed": seed}
    fpe = flops_per_example(config)
    result["flops"] = {"per_example": fpe, "per_epoch": fpe["total"] * n}

    torch_rows = [p for p in TORCH_ROWS if p in paths]
    torch_ok, torch_why = _torch_available() if use_torch and torch_rows else (
        False, "PyTorch skipped (not asked for)")
    jax_ok, jax_why = _jax_available() if use_jax and "jax" in paths else (
        False, "JAX skipped (not asked for)")
    notes = [why for ok, why, asked in ((torch_ok, torch_why, torch_rows),
                                        (jax_ok, jax_why, "jax" in paths))
             if asked and not ok]
    log(f"benchmark: {n} examples, batch {batch_size}, {epochs} epochs per path, "
        f"{threads} BLAS threads" + "".join(f"; {why}" for why in notes))
    _warm_up(config, x, batch_size)
    runners = {}
    with tempfile.TemporaryDirectory(prefix="vae-bench-") as tmp:
        try:
            if torch_ok:   # their processes start first, and build while the others do
                data_dir = Path(tmp)
                np.save(data_dir / "x.npy", np.ascontiguousarray(x))
                if x_test is not None:
                    np.save(data_dir / "x_test.npy", np.ascontiguousarray(x_test))
                for name in torch_rows:
                    runners[name] = _TorchWorker(name, config, data_dir, batch_size, seed,
                                                 threads, **TORCH_ROWS[name])
            if "numba" in paths:
                runners["numba"] = _NumpyPath("numpy", config, x, batch_size, seed)
            if "reference" in paths:
                runners["reference"] = _NumpyPath("numpy-ref", config, x, batch_size, seed)
            for name, variant in VARIANTS.items():
                if name in paths:
                    runners[name] = _NumpyPath("numpy", config, x, batch_size, seed, variant)
            if "gemm" in paths:
                runners["gemm"] = _GemmPath(config, n, batch_size, seed)
            if jax_ok:
                runners["jax"] = _JaxPath(config, x, batch_size, seed)
            for r in runners.values():
                if isinstance(r, _TorchWorker):
                    r.ready()
            runners = {k: runners[k] for k in ALL_PATHS if k in runners}
            recs = _run_interleaved(runners, epochs, pause, log)
            result["load_average_after"] = ([round(v, 2) for v in os.getloadavg()]
                                            if hasattr(os, "getloadavg") else None)
            result["paths"] = _path_results(recs, runners, result["flops"]["per_epoch"])
            for name in torch_rows if not torch_ok else ():
                result["paths"][name] = {"skipped": torch_why}
            if "jax" in paths and not jax_ok:
                result["paths"]["jax"] = {"skipped": jax_why}
            result["ratios"], result["goals"] = _ratios(result["paths"])
            # the variants against the default, round by round (they ran next to each other)
            result["round_ratios"] = {
                f"{v}/numba": float(np.median(np.divide(recs[v].epochs, recs["numba"].epochs)))
                for v in VARIANTS if v in recs and "numba" in recs}
            if x_test is not None and "numba" in runners and "reference" in runners:
                result["test_elbo"] = _test_elbos(runners, x_test, config, x, batch_size,
                                                  seed, epochs, extras, log)
        finally:
            for r in runners.values():
                if isinstance(r, _TorchWorker):
                    r.close()
    result["flush_after_run"] = denormals_flushed()   # this process's own thread: False
    if extras:
        log("  GEMM shapes: BLAS against numba ...")
        result["gemm_table"] = gemm_table(config, batch_size, reps=gemm_reps, x=x[:batch_size])
        log("  compilation (fresh processes) ...")
        result["compile"] = compile_times()
        log("  peak memory (fresh processes) ...")
        result["memory"] = peak_memory()
    return result


def _run_interleaved(runners: dict, epochs: int, pause: float, log) -> dict:
    """One epoch of each runner in turn, ``epochs`` rounds, who goes first rotating."""
    recs = {name: _Path(name) for name in runners}
    names = list(runners)
    for e in range(epochs):
        order = names[e % len(names):] + names[:e % len(names)]
        for name in order:
            time.sleep(pause)
            seconds = runners[name].epoch(recs[name].phases)
            recs[name].epochs.append(seconds)
            if hasattr(runners[name], "adam_subnormals"):          # untimed
                recs[name].subnormals.append(runners[name].adam_subnormals())
        log(f"  epoch {e + 1}: " + ", ".join(f"{k} {recs[k].epochs[-1]:.2f}s" for k in names))
    return recs


def _path_results(recs: dict, runners: dict, flops_per_epoch: float) -> dict:
    out = {}
    for name, rec in recs.items():
        med = float(np.median(rec.epochs))
        total = sum(rec.epochs)
        row = {"epochs_s": rec.epochs, "median_s": med, "gflops": flops_per_epoch / med / 1e9,
               "phases_share": {k: v / total for k, v in rec.phases.items()}}
        if rec.subnormals:
            row["adam_subnormals"] = {"m": [c["m"] for c in rec.subnormals],
                                      "v": [c["v"] for c in rec.subnormals],
                                      "size": rec.subnormals[-1]["size"]}
        runner = runners[name]
        if isinstance(runner, _TorchWorker):
            row["flushed_share"] = runner.flushed_share
            row.update({k: v for k, v in TORCH_ROWS[name].items()})
        if getattr(runner, "note", ""):
            row["note"] = runner.note
        out[name] = row
    return out


#: The ratios of medians reported, and the goals some of them have (issue: numba at
#: most half PyTorch's default, three quarters of JAX).
RATIOS = (("numba", "torch"), ("numba", "torch-fused-flush"), ("numba", "jax"),
          ("numba", "gemm"), ("numba", "reference"), ("numba", "torch-fused"),
          ("reference", "torch"), ("torch", "gemm"), ("jax", "gemm"),
          ("torch-fused-flush", "torch"), *((v, "numba") for v in VARIANTS))
GOALS = {"numba/torch": ("numba / PyTorch default", 0.5),
         "numba/torch-fused-flush": ("numba / PyTorch best (fused Adam + flush denormals)", None),
         "numba/jax": ("numba / JAX jit", 0.75)}


def _ratios(paths_out: dict) -> tuple[dict, list]:
    med = {k: v["median_s"] for k, v in paths_out.items() if "median_s" in v}
    ratios = {f"{a}/{b}": med[a] / med[b] for a, b in RATIOS if a in med and b in med}
    goals = [{"ratio": k, "what": what, "value": ratios[k], "goal": goal,
              "met": None if goal is None else ratios[k] <= goal}
             for k, (what, goal) in GOALS.items() if k in ratios]
    return ratios, goals


def _test_elbos(runners, x_test, config, x, batch_size, seed, epochs, extras, log) -> dict:
    """Test negative ELBO each path's model reached (the NumPy and JAX ones evaluated alike)."""
    from .evaluate import negative_elbo

    a = negative_elbo(runners["numba"].model, x_test)["loss"]
    b = negative_elbo(runners["reference"].model, x_test)["loss"]
    out = {"numba": a, "reference": b, "abs_diff": abs(a - b)}
    if extras:
        # How far apart does float32 rounding alone put two runs? Train the reference
        # path again with every initial weight moved by one unit in the last place.
        log("  the reference path again, initial weights moved by 1 ulp (untimed) ...")
        nudged = _NumpyPath("numpy-ref", config, x, batch_size, seed)
        flat = nudged.model.flat
        flat[...] = np.nextafter(flat, np.float32(np.inf))
        for _ in range(epochs):
            nudged.epoch(dict.fromkeys(PHASES, 0.0))
        c = negative_elbo(nudged.model, x_test)["loss"]
        out.update(reference_1ulp=c, rounding_spread=abs(c - b))
    if "jax" in runners:
        out["jax"] = negative_elbo(runners["jax"].trained_model(), x_test)["loss"]
    for name in TORCH_ROWS:
        if name in runners:
            out[name] = runners[name].test_loss()
    return out


# -- writing it down -----------------------------------------------------------------
def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}"


LABELS = {"numba": "NumPy + numba (default)", "reference": "NumPy reference (numpy-ref)",
          "gemm": "GEMMs alone (floor)", "jax": "JAX, jit of the whole step",
          "torch": "PyTorch CPU, default",
          "torch-fused": "PyTorch CPU, fused Adam",
          "torch-fused-flush": "PyTorch CPU, fused Adam + flush denormals",
          "numba-compact": "NumPy + numba, compact first layer",
          "numba-threads": "NumPy + numba, kernels on 2 threads"}


def machine_line(result: dict) -> str:
    """One sentence: when and on what ``result`` was measured, and the load around it."""
    m = result["machine"]
    blas = m.get("blas", {})
    return (f"Measured {m['date']} on {m['cpu']}, {m['usable_cores']} cores; "
            f"NumPy {m['numpy']} with {blas.get('name', '?')} {blas.get('version', '')}"
            f" ({blas.get('threads', result['threads'])} threads, kernel "
            f"{blas.get('architecture', '?')}, OPENBLAS_CORETYPE {m['OPENBLAS_CORETYPE']}), "
            f"numba {m['numba']}, PyTorch {m.get('torch') or 'not installed'}, "
            f"JAX {m.get('jax') or 'not installed'}, "
            f"Python {m['python']}. Load average before {m.get('load_average')}, after "
            f"{result.get('load_average_after')}.")


def run_sparse_study(*, batch_size: int = 128, seed: int = 0, reps: int = 50,
                     rounds: int = 3, processes: int = 5, x=None) -> dict:
    """:func:`vae_numpy.sparse_study.study` on the first batch an epoch with ``seed``
    would train on (MNIST's training digits unless ``x`` is given), with the machine.

    The study runs in ``processes`` fresh processes, one after the other: on the shared
    machine the book was built on, a kernel's ratio to BLAS ranged over tenths across
    processes (book/bench/sparse.md). Each row reports the median over the processes
    and their range (``vs_range``), and the widest spread between the rounds of one
    process (``round_spread``); ``runs_vs`` keeps every process's ratios.
    """
    import tempfile

    from . import sparse_study
    from .data import load_mnist
    from .errors import InputError

    if batch_size < 4 or batch_size % 4:
        raise InputError(f"--batch-size must be a positive multiple of 4 for --sparse; "
                         f"got {batch_size}")
    if x is None:
        x = load_mnist("train").x
    if batch_size > x.shape[0]:
        raise InputError(f"--batch-size {batch_size} is more than the {x.shape[0]} images")
    order = np.random.default_rng(seed).permutation(x.shape[0])[:batch_size]
    xb = np.ascontiguousarray(x[np.sort(order)], dtype=np.float32)
    result = {"machine": machine_info(), "threads": blas_threads(), "seed": seed}
    with tempfile.TemporaryDirectory(prefix="vae-sparse-") as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, xb)
        code = ("import json\nimport numpy as np\nfrom vae_numpy import sparse_study\n"
                f"x = np.load({str(path)!r})\n"
                f"res = sparse_study.study(x, reps={reps}, rounds={rounds}, seed={seed})\n"
                "print(json.dumps(res))\n")
        runs = [_run_python(code, {}) for _ in range(processes)]
    result["sparse_study"] = sparse_study.combine(runs)
    result["load_average_after"] = ([round(v, 2) for v in os.getloadavg()]
                                    if hasattr(os, "getloadavg") else None)
    return result


def busy_warning(result: dict) -> str:
    """A warning when the load before the run shows another program on the cores, else ''.

    BLAS spreads each product over every core and suffers most when one is taken: in a
    run beside another build on two cores, BLAS took 75 times its quiet time while the
    one-thread kernels hardly slowed, so every ratio to BLAS was meaningless.
    """
    m = result["machine"]
    load, cores = (m.get("load_average") or [0])[0], m.get("usable_cores") or 1
    if load <= max(cores - 1, 0.5 * cores):
        return ""
    return (f"**Warning:** the load average before the run was {load:.2f} on {cores} cores: "
            "another program was using them. BLAS's threads suffer most from that, so the "
            "ratios to BLAS below are not to be trusted; run again on a quiet machine.")


def sparse_markdown(result: dict) -> str:
    """The report of :func:`run_sparse_study` (with :func:`busy_warning` first, if any)."""
    from . import sparse_study

    warning = busy_warning(result)
    head = machine_line(result) + (f"\n\n{warning}" if warning else "")
    return sparse_study.to_markdown(result["sparse_study"], head)


def to_markdown(result: dict) -> str:
    """The benchmark's result as a Markdown report (tables and the machine it ran on)."""
    lines = [
        machine_line(result),
        "",
        f"Default VAE {result['config']['input_dim']}-"
        f"{'-'.join(map(str, result['config']['hidden_dims']))}-"
        f"{result['config']['latent_dim']}, batch {result['batch_size']}, Adam, float32, "
        f"{result['examples']} examples per epoch, {result['epochs']} epochs per path "
        f"interleaved; {result['flops']['per_epoch'] / 1e9:.1f} GFLOP per epoch.",
        "",
        "| path | median s / epoch | epochs (s) | GFLOP/s | data | forward | loss | backward "
        "| optimizer |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = LABELS
    notes = []
    for name in ALL_PATHS:
        p = result["paths"].get(name)
        if p and "note" in p:
            notes.append(f"{labels[name]}: {p['note']}.")
        if p and "flushed_share" in p:
            notes.append(f"{labels[name]}: in its own process; a parallel multiply there "
                         f"flushed {p['flushed_share']:.0%} of its subnormal inputs to 0.")
    for name in ALL_PATHS:
        p = result["paths"].get(name)
        if p is None:
            continue
        if "skipped" in p:
            lines.append(f"| {labels[name]} | — | {p['skipped']} | | | | | | |")
            continue
        sh = p["phases_share"]
        lines.append(
            f"| {labels[name]} | {p['median_s']:.3f} | "
            f"{', '.join(f'{s:.2f}' for s in p['epochs_s'])} | {p['gflops']:.0f} | "
            + " | ".join(f"{sh[k]:.0%}" if sh[k] else "—" for k in PHASES) + " |")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    if result.get("goals"):
        lines += ["", "| ratio of medians, one interleaved run | value | goal |",
                  "|---|---:|---:|"]
        for g in result["goals"]:
            goal = "" if g["goal"] is None else (
                f"<= {g['goal']:.2f} ({'met' if g['met'] else 'not met'})")
            lines.append(f"| {g['what']} | {g['value']:.2f} | {goal} |")
    # every other ratio, once: those with a goal are in the table above
    shown = {g.get("ratio") for g in result.get("goals") or ()}
    rest = {k: v for k, v in result["ratios"].items() if k not in shown}
    if rest:
        lines += ["", "| other ratios of medians | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in rest.items()]
    subn = {k: p["adam_subnormals"] for k, p in result["paths"].items()
            if "adam_subnormals" in p}
    if subn:
        size = next(iter(subn.values()))["size"]
        lines += ["", f"Subnormal numbers in Adam's first moment m (PyTorch's `exp_avg`), of "
                      f"{size:,}, after each epoch:", "",
                  "| path | " + " | ".join(f"epoch {e + 1}" for e in range(result["epochs"]))
                  + " |", "|---|" + "---:|" * result["epochs"]]
        for k, v in subn.items():
            lines.append(f"| {labels[k]} | " + " | ".join(f"{c:,}" for c in v["m"]) + " |")
    if result.get("round_ratios"):
        lines += ["", "| median of per-round ratios | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in result["round_ratios"].items()]
    te = result.get("test_elbo")
    if te:
        spread = (f"; the reference path from initial weights moved by 1 ulp: "
                  f"{te['reference_1ulp']:.4f} (difference {te['rounding_spread']:.2g} nats, "
                  f"what float32 rounding alone does)" if "reference_1ulp" in te else "")
        lines += ["", f"Test negative ELBO after {result['epochs']} epochs: numba path "
                      f"{te['numba']:.4f}, reference path {te['reference']:.4f} "
                      f"(difference {te['abs_diff']:.2g} nats){spread}"
                  + "".join(f", {labels[k]} {te[k]:.4f}" for k in ("jax", *TORCH_ROWS)
                            if k in te) + "."]
    if result.get("gemm_table"):
        lines += ["", "| GEMM (m x k x n) | | BLAS µs | numba µs | numba / BLAS | used |",
                  "|---|---|---:|---:|---:|---|"]
        for r in result["gemm_table"]:
            lines.append(f"| {r['name']} | {r['shape']} | {r['blas_s'] * 1e6:.1f} | "
                         f"{r['numba_s'] * 1e6:.1f} | {r['ratio']:.2f} | {r['library']} |")
    c = result.get("compile")
    if c:
        lines += ["", f"Compilation in a fresh process: {c['cold_s']:.1f} s with an empty "
                      f"numba cache, {c['warm_s']:.2f} s from the cache "
                      f"(import of vae_numpy {c['import_s']:.2f} s)."]
    mem = result.get("memory")
    if mem:
        def mib(v):
            return f"{v / 2**20:.0f} MiB"
        lines += ["", "| memory, training on MNIST | peak RSS | imports | + MNIST | + model, "
                      "first step | after 100 steps | temporaries of a step |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for k, v in mem.items():
            lines.append(f"| {k} | {mib(v['peak_rss'])} | {mib(v['after_import'])} | "
                         f"{mib(v['after_data'])} | {mib(v['after_first_step'])} | "
                         f"{mib(v['after_steps'])} | "
                         f"{v['step_temporaries'] / 1024:.0f} KiB |")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out_dir, name: str = "bench",
                  render=None) -> tuple[Path, Path]:
    """Write ``NAME.md`` (``render(result)``, default :func:`to_markdown`) and
    ``NAME.json`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{name}.md", out / f"{name}.json"
    md.write_text((render or to_markdown)(result))
    js.write_text(json.dumps(result, indent=1, default=float))
    return md, js
