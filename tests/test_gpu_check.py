"""`python3 dev.py gpu` without a GPU, and its results writer on made-up timings.

The check itself needs an NVIDIA GPU (tools/gpu_check.py); here only what runs without
one is tested: the one-line refusal, and the JSON and Markdown it would write.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dev_gpu(path_dir):
    env = {**os.environ, "PATH": str(path_dir)}
    return subprocess.run([sys.executable, str(ROOT / "dev.py"), "gpu"], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.mark.parametrize("smi", [None, "echo 'NVIDIA-SMI has failed'; exit 9", "echo"],
                         ids=["no nvidia-smi", "nvidia-smi fails", "no GPU listed"])
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path, smi):
    if smi is not None:
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\n{smi}\n")
        script.chmod(0o755)
    had_venv = (ROOT / ".venv").exists()
    p = dev_gpu(tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr == "" and "Traceback" not in p.stdout
    lines = p.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dev.py gpu: no NVIDIA GPU here")
    assert (ROOT / ".venv").exists() == had_venv          # refused before installing anything


def fake_results(g, torch=True):
    paths = {"cupy": {"epochs_s": [1.2, 1.0, 1.1]}}
    paths["torch-cuda"] = {"epochs_s": [0.5, 0.4, 0.6, 0.3]} if torch else {
        "skipped": "PyTorch is not installed"}
    return g.results(machine={"gpu": "Fake GPU", "driver": "1.0", "cupy": "14.0",
                              "torch": "2.9" if torch else None},
                     tests={"command": "pytest ...", "returncode": 0, "summary": "2 passed"},
                     check={"examples": 10000, "cupy": 150.0, "reference": 150.003,
                            "rel_diff": 2e-5},
                     paths=paths, data="MNIST", examples=60000, seconds=123.4,
                     notes=["a note"])


def test_the_results_record_medians_ratios_and_notes(tmp_path):
    g = gpu_check()
    r = fake_results(g)
    assert r["paths"]["cupy"]["median_s"] == 1.1
    assert r["paths"]["torch-cuda"]["median_s"] == 0.45           # even count: the mean of two
    assert r["ratios"] == {"cupy/torch-cuda": round(1.1 / 0.45, 3)}
    js, md = g.write_results(r, tmp_path)
    assert json.loads(js.read_text()) == r
    text = md.read_text()
    for words in ("Fake GPU", "2 passed", "| vae_numpy, backend cupy | 1.100 |",
                  "| PyTorch, CUDA | 0.450 |", "cupy/torch-cuda = 2.444", "- a note",
                  "relative difference 2.0e-05"):
        assert words in text, words
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.json", "gpu.md"]  # no temp files


def test_a_skipped_pytorch_is_said_and_has_no_ratio(tmp_path):
    g = gpu_check()
    r = fake_results(g, torch=False)
    assert r["ratios"] == {} and r["paths"]["torch-cuda"] == {"skipped": "PyTorch is not installed"}
    (tmp_path / "gpu.md").write_text("an older run")
    _, md = g.write_results(r, tmp_path)                            # replaced whole
    assert "| PyTorch, CUDA | skipped | PyTorch is not installed |" in md.read_text()
    assert "PyTorch not installed" in md.read_text()


def test_the_pytorch_path_trains_through_the_benchmarks_model():
    """Its epoch loop, run on the CPU here (the check runs it on CUDA)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    g = gpu_check()
    x = np.random.default_rng(0).random((300, 784), dtype=np.float32)
    path = g._TorchCudaPath(x, device="cpu")
    before = [p.detach().clone() for p in path.p.params]
    assert path.epoch() > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, path.p.params))  # Adam stepped
