"""The GPU check that ``python3 dev.py gpu`` runs in .venv once CuPy is installed.

1. the real-CuPy tests (``tests/test_backends.py -k cupy``), on the GPU;
2. one epoch of backend ``cupy`` against one of ``numpy-ref`` from the same seed: their
   test ELBOs must agree within 1e-3 relative (cuBLAS and NumPy's BLAS round differently,
   and training amplifies rounding a little);
3. seconds per training epoch of the default VAE (784-400-20-400-784, batch 128, Adam) on
   the CuPy path against PyTorch on CUDA, interleaved epoch by epoch after one warm-up
   epoch each (PyTorch skipped, with its reason, when it is not installed with CUDA);
4. ``book/bench/gpu.json`` and ``book/bench/gpu.md``, each written atomically.

Everything is cut to fit ``--deadline`` (a time.time() value; dev.py gives it 8 minutes
from its start, installs included): fewer timed epochs when time is short.

The PyTorch model is :class:`vae_numpy.bench._TorchPath` (the CPU benchmark's: same
architecture, initialization rule, loss and Adam), moved to the GPU; only its epoch loop
is written again here, because that one draws its noise on the CPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "bench"
TESTS = ["tests/test_backends.py", "-k", "cupy", "-rs", "-q", "-p", "no:cacheprovider"]


# -- results: pure functions of the measurements (tested without a GPU) ----------------------
def summarize(epochs_s: list[float]) -> dict:
    s = sorted(epochs_s)
    mid = len(s) // 2
    median = s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    return {"epochs_s": [round(t, 4) for t in epochs_s], "median_s": round(median, 4)}


def results(*, machine: dict, tests: dict, check: dict, paths: dict, data: str,
            examples: int, seconds: float, notes: list[str]) -> dict:
    """The results record: ``paths`` maps a name to epoch seconds or ``{"skipped": why}``."""
    out_paths = {name: p if "skipped" in p else summarize(p["epochs_s"])
                 for name, p in paths.items()}
    ratios = {}
    cu, th = out_paths.get("cupy", {}), out_paths.get("torch-cuda", {})
    if "median_s" in cu and "median_s" in th and th["median_s"] > 0:
        ratios["cupy/torch-cuda"] = round(cu["median_s"] / th["median_s"], 3)
    return {"date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine,
            "tests": tests, "check": check, "data": data, "examples": examples,
            "batch_size": 128, "model": "VAE 784-400-20-400-784, Bernoulli, Adam lr 1e-3",
            "paths": out_paths, "ratios": ratios, "seconds": round(seconds, 1),
            "notes": notes}


def to_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# The CuPy backend on a GPU ({r['date']})", "",
             f"{m.get('gpu', '?')}, driver {m.get('driver', '?')}; CuPy {m.get('cupy')}, "
             f"PyTorch {m.get('torch') or 'not installed'}. Written by `python3 dev.py gpu`.",
             "", f"**Real-CuPy tests:** {r['tests'].get('summary', '?')} "
             f"(exit {r['tests'].get('returncode')}).", ""]
    c = r["check"]
    if "rel_diff" in c:
        lines += [f"**CuPy against numpy-ref**, one epoch from the same seed on "
                  f"{c['examples']} examples: test negative ELBO {c['cupy']:.4f} against "
                  f"{c['reference']:.4f} (relative difference {c['rel_diff']:.1e}).", ""]
    elif c:
        lines += [f"**CuPy against numpy-ref:** {c.get('skipped', c)}", ""]
    lines += [f"Seconds per epoch, {r['data']} ({r['examples']} examples, batch "
              f"{r['batch_size']}), after one warm-up epoch each, interleaved:", "",
              "| path | median s/epoch | epochs (s) |", "|---|---:|---|"]
    names = {"cupy": "vae_numpy, backend cupy", "torch-cuda": "PyTorch, CUDA"}
    for name, p in r["paths"].items():
        if "skipped" in p:
            lines.append(f"| {names.get(name, name)} | skipped | {p['skipped']} |")
        else:
            lines.append(f"| {names.get(name, name)} | {p['median_s']:.3f} | "
                         + ", ".join(f"{t:.3f}" for t in p["epochs_s"]) + " |")
    if r["ratios"]:
        lines += ["", "Ratio of medians: " + ", ".join(f"{k} = {v}" for k, v in
                                                       r["ratios"].items()) + "."]
    if r["notes"]:
        lines += ["", *[f"- {n}" for n in r["notes"]]]
    return "\n".join(lines) + "\n"


def write_results(r: dict, out_dir=OUT, name: str = "gpu") -> tuple[Path, Path]:
    """``NAME.json`` and ``NAME.md`` in ``out_dir``, each replaced atomically."""
    from vae_numpy.io import atomic_write

    out = Path(out_dir)
    js, md = out / f"{name}.json", out / f"{name}.md"
    with atomic_write(js, "w") as f:
        f.write(json.dumps(r, indent=1) + "\n")
    with atomic_write(md, "w") as f:
        f.write(to_markdown(r))
    return js, md


# -- measurements (need the GPU) --------------------------------------------------------------
def machine() -> dict:
    info: dict = {"python": sys.version.split()[0]}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=30).stdout.strip().splitlines()[0]
        info["gpu"], info["driver"], info["memory"] = (s.strip() for s in q.split(","))
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        pass
    import cupy

    info["cupy"] = cupy.__version__
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def run_tests(timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", *TESTS]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": " ".join(TESTS), "returncode": None,
                "summary": f"timed out after {timeout:.0f} s"}
    print(p.stdout[-3000:], p.stderr[-2000:], sep="\n", flush=True)
    tail = [line for line in p.stdout.splitlines() if line.strip()]
    return {"command": "pytest " + " ".join(TESTS), "returncode": p.returncode,
            "summary": tail[-1].strip("= ") if tail else "no output"}


def load_data(limit: int | None):
    """MNIST if it is here (never downloaded), else MNIST-like synthetic pixels."""
    import numpy as np

    os.environ.setdefault("VAE_NUMPY_OFFLINE", "1")
    try:
        from vae_numpy.data import load_mnist

        x, x_test, what = load_mnist("train").x, load_mnist("test").x, "MNIST"
    except Exception as err:  # no files and no network: the timings need only the shapes
        rng = np.random.default_rng(0)
        x = rng.random((70000, 784), dtype=np.float32)
        x[rng.random(x.shape) < 0.8] = 0
        x, x_test = x[:60000], x[60000:]
        what = f"synthetic MNIST-like pixels (MNIST unavailable: {type(err).__name__})"
    return (x if limit is None else x[:limit]), x_test, what


def check_against_reference(x, x_test, n: int = 10000) -> dict:
    from vae_numpy.evaluate import negative_elbo
    from vae_numpy.model import VAE
    from vae_numpy.train import fit

    got = {}
    for backend in ("cupy", "numpy-ref"):
        model = VAE(rng=0, backend=backend)
        fit(model, x[:n], epochs=1, rng=0, progress=False)
        got[backend] = negative_elbo(model, x_test)["loss"]
    a, b = got["cupy"], got["numpy-ref"]
    return {"examples": n, "cupy": a, "reference": b, "rel_diff": abs(a - b) / abs(b)}


class _CupyPath:
    def __init__(self, x):
        import cupy
        import numpy as np

        from vae_numpy.model import VAE
        from vae_numpy.train import make_optimizer

        self.cupy = cupy
        self.model = VAE(rng=0, backend="cupy")
        self.opt = make_optimizer(self.model)
        self.rng = np.random.default_rng(0)
        self.x = cupy.asarray(x)

    def epoch(self) -> float:
        from vae_numpy.train import fit

        sync = self.cupy.cuda.Device().synchronize
        sync()
        t = time.perf_counter()
        fit(self.model, self.x, epochs=1, optimizer=self.opt, rng=self.rng, progress=False)
        sync()
        return time.perf_counter() - t


class _TorchCudaPath:
    """bench._TorchPath's model and Adam on the GPU, its noise drawn there too."""

    def __init__(self, x, device: str = "cuda"):
        import torch

        from vae_numpy.bench import _TorchPath
        from vae_numpy.model import ModelConfig

        self.torch = torch
        dev = self.dev = torch.device(device)     # "cpu" only for the test without a GPU
        self.p = _TorchPath(ModelConfig(), x, 128, 0, threads=1)
        for module in (self.p.encoder, self.p.heads, self.p.decoder):
            module.to(dev)            # in place: the optimizer keeps the same parameters
        self.p.x = self.p.x.to(dev)
        self.gen = torch.Generator(device=dev).manual_seed(0)

    def epoch(self) -> float:
        from vae_numpy.data import minibatches

        torch, p = self.torch, self.p
        F = torch.nn.functional
        sync = torch.cuda.synchronize if self.dev.type == "cuda" else (lambda: None)
        sync()
        t = time.perf_counter()
        for idx in minibatches(p.x.shape[0], p.batch_size, p.rng):
            xb = p.x[torch.from_numpy(idx).to(self.dev)]
            eps = torch.randn(xb.shape[0], p.K, generator=self.gen, device=self.dev)
            x_logits, mu, log_var = p._forward(xb, eps)
            b = xb.shape[0]
            rec = F.binary_cross_entropy_with_logits(x_logits, xb, reduction="sum") / b
            kl = 0.5 * (mu * mu + torch.expm1(log_var) - log_var).sum() / b
            loss = rec + p.beta * kl
            loss.backward()
            if not math.isfinite(loss.item()):   # one sync per step, as fit's float(loss)
                raise FloatingPointError("PyTorch training diverged")
            p.optimizer.step()
            p.optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t


def torch_cuda() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return False, f"PyTorch {torch.__version__} sees no CUDA device"
    return True, ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deadline", type=float, default=time.time() + 420)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per path (at most)")
    ap.add_argument("--limit", type=int, default=None, help="training examples (all: 60000)")
    ap.add_argument("--note", action="append", default=[], help="a line for the results")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    t0 = time.time()
    sys.path.insert(0, str(ROOT))
    left = lambda: args.deadline - time.time()  # noqa: E731
    notes = list(args.note)
    info = machine()
    tests = run_tests(timeout=max(30.0, min(150.0, left() - 200)))
    x, x_test, what = load_data(args.limit)
    try:
        check = check_against_reference(x, x_test) if left() > 150 else {
            "skipped": "no time left before the deadline"}
    except Exception as err:  # recorded, not fatal: the timings still say something
        check = {"skipped": f"{type(err).__name__}: {err}"}
    ok, why = torch_cuda()
    paths = {"cupy": _CupyPath(x)}
    if ok:
        paths["torch-cuda"] = _TorchCudaPath(x)
    times: dict = {name: [] for name in paths}
    for path in paths.values():
        path.epoch()                                    # warm-up: kernels compile, memory
    for _ in range(args.epochs):
        start = time.time()
        for name, path in paths.items():
            times[name].append(path.epoch())
        per_round = time.time() - start
        if left() < per_round + 20:
            notes.append(f"timed epochs cut to {len(times['cupy'])} by the deadline")
            break
    measured = {name: {"epochs_s": t} for name, t in times.items()}
    if not ok:
        measured["torch-cuda"] = {"skipped": why}
    r = results(machine=info, tests=tests, check=check, paths=measured, data=what,
                examples=int(x.shape[0]), seconds=time.time() - t0, notes=notes)
    js, md = write_results(r, args.out)
    print(to_markdown(r))
    print(f"wrote {js} and {md}")
    failed = tests.get("returncode") not in (0,) or check.get("rel_diff", 0) > 1e-3
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
