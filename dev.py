#!/usr/bin/env python3
"""Task runner for the book and the library (standard library only, Python 3.10+).

    python3 dev.py book          build the HTML book into _build/html
    python3 dev.py test [ARGS]   ruff, then pytest: the unit tests and every chapter (nbval);
                                 ARGS go to pytest (and skip ruff), e.g. `-k kl` or
                                 `book/07_kl_divergence.ipynb`
    python3 dev.py screenshots   screenshot every page of the built book and check that
                                 math is typeset and nothing is fetched from the network
    python3 dev.py gpu           on a machine with an NVIDIA GPU: use this Python if it has
                                 CuPy already, else install cupy-cuda12x into .venv (and
                                 PyTorch with CUDA if it installs in time), run the real-CuPy
                                 tests, time epochs on the CuPy path against PyTorch CUDA and
                                 write book/bench/gpu.json and .md (tools/gpu_check.py; within
                                 8 minutes). Without a GPU it says so and exits with status 2

Each command first makes sure `.venv` exists and holds requirements.txt and the
package (`pip install -e .`), then runs the tools from `.venv/bin` (all but `gpu` run by
a Python that has CuPy). It needs nothing installed beforehand but Python, so it is the
one way in from a fresh clone.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / "vae_numpy-deps.sha256"
VENDOR = ROOT / "_vendor"
REGISTRY = "https://registry.npmjs.org"

# JavaScript the built book serves itself, so that it renders with no network.
# Each entry becomes one folder of _vendor/: the newest release of `major` of an npm
# package, the files matching `keep` with `strip` cut from their paths, plus `add`,
# files of our own. _config.yml points `mathjax_path` here.
NPM_ASSETS = {
    # MathJax finds its fonts and TeX extensions relative to tex-chtml.js, so the es5/
    # layout is kept. The extensions are autoloaded by macros such as \boldsymbol.
    "mathjax": {
        "package": "mathjax", "major": 3, "strip": "es5/",
        "keep": ["es5/tex-chtml.js", "es5/output/chtml/fonts/*",
                 "es5/input/tex/extensions/*", "LICENSE", "package.json"],
    },
}


def run(cmd: list, env: dict | None = None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode


def deps_hash() -> str:
    h = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv() -> None:
    """Create .venv and install into it, unless the stamp says it is up to date."""
    if not PYTHON.exists():
        if run([sys.executable, "-m", "venv", VENV]) != 0:
            sys.exit("dev.py: could not create .venv (on Debian: apt-get install python3-venv)")
    wanted = deps_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if run([PYTHON, "-m", "pip", "install", "-r", "requirements.txt", "-e", "."]) != 0:
        sys.exit("dev.py: pip install into .venv failed (see above)")
    # ipykernel ships the `python3` kernelspec inside the environment
    # (.venv/share/jupyter/kernels); its argv "python" resolves to the running
    # interpreter, so nbval and jupyter-book run chapters in .venv. Install it only
    # if a broken install left it out; never register a kernel for the user.
    kernelspec = VENV / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    if not kernelspec.exists() and run(
            [PYTHON, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"]) != 0:
        sys.exit("dev.py: could not install the python3 kernelspec into .venv")
    STAMP.write_text(wanted + "\n")


def child_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(VENV)
    # Prefer the kernelspec of .venv over one a user may have registered in ~/.local.
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    # MPLBACKEND=Agg would silently drop every inline figure from the chapters.
    env.pop("MPLBACKEND", None)
    # vae_numpy reads MNIST from $VAE_NUMPY_DATA/mnist; CI sets the variable itself.
    shared_data = ROOT.parent / "shared" / "data"
    if "VAE_NUMPY_DATA" not in env and (shared_data / "mnist").is_dir():
        env["VAE_NUMPY_DATA"] = str(shared_data.resolve())
    return env


# --- vendored JavaScript ---------------------------------------------------------

def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _latest(versions: dict, major: int) -> str:
    """Newest release (no pre-releases) of one major version."""
    def key(v: str) -> tuple:
        return tuple(int(p) for p in v.split("."))
    releases = [v for v in versions if v.replace(".", "").isdigit() and v.count(".") == 2]
    matching = [v for v in releases if key(v)[0] == major]
    if not matching:
        raise RuntimeError(f"no {major}.x release among {sorted(releases, key=key)}")
    return max(matching, key=key)


def _verify(data: bytes, dist: dict, what: str) -> None:
    """Check the tarball against the registry's integrity (sha512) and shasum (sha1)."""
    checked = False
    integrity = dist.get("integrity", "")
    if integrity.startswith("sha512-"):
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != integrity[len("sha512-"):]:
            raise RuntimeError(f"{what}: sha512 mismatch, expected {integrity}")
        checked = True
    if "shasum" in dist:
        if hashlib.sha1(data).hexdigest() != dist["shasum"]:
            raise RuntimeError(f"{what}: sha1 mismatch, expected {dist['shasum']}")
        checked = True
    if not checked:
        raise RuntimeError(f"{what}: the registry gave no checksum to verify against")


def spec_id(spec: dict) -> str:
    """Fingerprint of an asset's entry in NPM_ASSETS: editing the entry refetches it."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def fetch_npm_asset(folder: str, spec: dict) -> None:
    package, keep, strip = spec["package"], spec["keep"], spec.get("strip", "")
    meta = json.loads(_get(f"{REGISTRY}/{package.replace('/', '%2f')}"))
    version = _latest(meta["versions"], spec["major"])
    dist = meta["versions"][version]["dist"]
    what = f"{package}@{version}"
    print(f"dev.py: fetching {what} into _vendor/{folder}", flush=True)
    data = _get(dist["tarball"])
    _verify(data, dist, what)

    VENDOR.mkdir(exist_ok=True)
    # Unpack into a temporary folder beside the target, then rename: an interrupted
    # fetch leaves no half-made folder that a later run would take as complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=VENDOR))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; it is to be served
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]  # drop the tarball's "package/"
                if not member.isfile() or not any(fnmatch.fnmatch(name, p) for p in keep):
                    continue
                rel = Path(name[len(strip):] if name.startswith(strip) else name)
                if rel.is_absolute() or ".." in rel.parts:
                    raise RuntimeError(f"{what}: unsafe path {member.name!r} in tarball")
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(tar.extractfile(member).read())
        for name, text in spec.get("add", {}).items():
            (tmp / name).write_text(text)
        (tmp / "VERSION").write_text(
            f"{what}\n{dist['tarball']}\n{dist.get('integrity', '')}\nspec {spec_id(spec)}\n")
        target = VENDOR / folder
        if target.exists():  # an outdated copy: move it aside, then delete it
            stale = Path(tempfile.mkdtemp(prefix=f".{folder}-old-", dir=VENDOR))
            target.rename(stale / folder)
            shutil.rmtree(stale)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_vendor() -> None:
    for folder, spec in NPM_ASSETS.items():
        version_file = VENDOR / folder / "VERSION"
        if not version_file.exists() or f"spec {spec_id(spec)}" not in version_file.read_text():
            fetch_npm_asset(folder, spec)


# --- commands --------------------------------------------------------------------

def cmd_book(args: list) -> int:
    ensure_venv()
    ensure_vendor()
    # jupyter-book, with its kernel client waiting for replies in short slices
    # (tools/jupyter_book_run.py says why)
    code = run([PYTHON, ROOT / "tools" / "jupyter_book_run.py", "build", "--all", "-W", "-n",
                "--keep-going", ".", *args], env=child_env())
    index = ROOT / "_build" / "html" / "index.html"
    print(f"\nThe book: {index}" if code == 0 else f"\nThe build failed (exit {code}).")
    return code


def cmd_test(args: list) -> int:
    ensure_venv()
    env = child_env()
    # The full run also lints (library, tests, tools and the chapters' code); a run of
    # chosen tests does not, so one chapter can be tried while another is half-written.
    lint = 0 if args else run([BIN / "ruff", "check", "."], env=env)
    code = run([PYTHON, "-m", "pytest", "--nbval-lax", *args], env=env)
    return code or lint


def cmd_screenshots(args: list) -> int:
    ensure_venv()
    return run([PYTHON, ROOT / "tools" / "screenshot_book.py", *args], env=child_env())


# --- the GPU check ------------------------------------------------------------------

GPU_BUDGET_S = 480      # the whole of `dev.py gpu`, installs included: 8 minutes
WHEELS = ROOT / ".whl"  # wheels brought along for a machine without the network (ignored)


def nvidia_gpu() -> str | None:
    """The first line of `nvidia-smi -L` ("GPU 0: ..."), or None without a usable GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        p = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [line for line in p.stdout.splitlines() if line.startswith("GPU ")]
    return gpus[0] if p.returncode == 0 and gpus else None


def venv_imports(code: str, timeout: float = 120, python=PYTHON) -> bool:
    try:
        return subprocess.run([str(python), "-c", code], cwd=ROOT, capture_output=True,
                              timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pip_install(packages: list, timeout: float) -> str:
    """Install into .venv (from .whl/ too when it exists); "" on success, else why not."""
    cmd = [PYTHON, "-m", "pip", "install", "-q", *packages]
    if WHEELS.is_dir():
        cmd[4:4] = ["--find-links", WHEELS]
    print("+", " ".join(str(c) for c in cmd), flush=True)
    try:
        code = subprocess.run([str(c) for c in cmd], cwd=ROOT, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return f"pip install {' '.join(packages)} took over {timeout:.0f} s"
    return "" if code == 0 else f"pip install {' '.join(packages)} failed (exit {code})"


def cmd_gpu(args: list) -> int:
    import time

    deadline = time.time() + GPU_BUDGET_S
    gpu = nvidia_gpu()
    if gpu is None:
        print("dev.py gpu: no NVIDIA GPU here (nvidia-smi is missing or lists none), so there "
              "is nothing to measure; without one, tests/test_fake_cupy.py checks the CuPy "
              "backend against a simulation of CuPy's semantics")
        return 2
    print(f"dev.py gpu: {gpu}", flush=True)
    cupy_runs = "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0"
    torch_runs = "import torch; assert torch.cuda.is_available()"
    if venv_imports(cupy_runs, python=sys.executable):
        # A lent GPU machine has no network, but its own Python may hold CuPy, PyTorch
        # and the library's needs already: run there as it is, with no .venv to build.
        notes = [] if venv_imports(torch_runs, python=sys.executable) else [
            "PyTorch CUDA skipped: this Python's torch is missing or sees no GPU"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return run([sys.executable, ROOT / "tools" / "gpu_check.py", "--deadline",
                    f"{deadline:.0f}", *[a for n in notes for a in ("--note", n)], *args],
                   env=env)
    ensure_venv()
    notes = []
    if not venv_imports(cupy_runs):
        # [ctk]: the CUDA libraries CuPy needs (NVRTC, cuBLAS, ...) as wheels, so no CUDA
        # toolkit has to be installed on the machine
        why = pip_install(["cupy-cuda12x[ctk]"], timeout=max(60, deadline - time.time() - 330))
        if why or not venv_imports("import cupy; cupy.ones(2).sum().item()"):
            print(f"dev.py gpu: CuPy does not run here: {why or 'it imports but computes nothing'}")
            return 1
    if not venv_imports(torch_runs):
        room = deadline - time.time() - 300       # leave the tests and timings 5 minutes
        why = pip_install(["torch"], timeout=room) if room > 30 else "no time left to install it"
        if why or not venv_imports(torch_runs):
            notes.append(f"PyTorch CUDA skipped: {why or 'torch installed but sees no GPU'}")
    return run([PYTHON, ROOT / "tools" / "gpu_check.py", "--deadline", f"{deadline:.0f}",
                *[a for n in notes for a in ("--note", n)], *args], env=child_env())


COMMANDS = {"book": cmd_book, "test": cmd_test, "screenshots": cmd_screenshots, "gpu": cmd_gpu}


def main(argv: list) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
