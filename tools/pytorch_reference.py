"""A PyTorch reference for chapter 9: the same VAE, trained the same way, with autograd.

    VAE_NUMPY_DATA=/path/to/data python tools/pytorch_reference.py

Trains the chapter's model in PyTorch, on the CPU: 784-400-20-400-784 with ReLU,
a Bernoulli decoder on the grey levels (binary cross-entropy with pixels / 255 as
targets, summed over pixels) plus the closed-form KL term, the loss averaged over
batches of 128, Adam with learning rate 1e-3, seed 0, ten epochs. PyTorch's own
defaults do the rest (nn.Linear's initialization, its random numbers), so the run
follows a different path from the NumPy one and ends at a similar model.

After every epoch it estimates the test negative ELBO (one draw of eps per test
digit, as vae_numpy.evaluate.negative_elbo does), prints it after epochs 1, 5 and
10, and writes everything to book/results/pytorch-reference.json: the numbers, the
torch version, the number of threads, the seconds of each epoch's training steps and
the command. Chapter 9 reads that file; it does not need PyTorch to run.

The MNIST files are read with vae_numpy.data.load_mnist, so both implementations
train on the same arrays. PyTorch is not a dependency of the book (it is not in
requirements.txt); install it to run this script.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vae_numpy.data import load_mnist

ROOT = Path(__file__).resolve().parents[1]
REPORTED_EPOCHS = (1, 5, 10)


class VAE(nn.Module):
    def __init__(self, d: int = 784, h: int = 400, k: int = 20):
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.mu = nn.Linear(h, k)
        self.log_var = nn.Linear(h, k)
        self.dec1 = nn.Linear(k, h)
        self.dec2 = nn.Linear(h, d)

    def encode(self, x):
        h = F.relu(self.enc(x))
        return self.mu(h), self.log_var(h)

    def decode(self, z):
        return self.dec2(F.relu(self.dec1(z)))      # logits of the pixel probabilities

    def terms(self, x, eps):
        """Per-example reconstruction and KL terms, in nats, shape (N,) each."""
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * eps     # the reparameterized sample
        x_logits = self.decode(z)
        rec = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(1)
        return rec, kl


@torch.no_grad()
def test_terms(model, x_test, generator, batch_size: int = 1000):
    """Mean test loss, reconstruction and KL terms (nats per digit), one eps each."""
    sums = {"loss": 0.0, "rec": 0.0, "kl": 0.0}
    for s in range(0, len(x_test), batch_size):
        xb = x_test[s:s + batch_size]
        eps = torch.randn(len(xb), 20, generator=generator)
        rec, kl = model.terms(xb, eps)
        sums["rec"] += rec.sum().item()
        sums["kl"] += kl.sum().item()
        sums["loss"] += (rec + kl).sum().item()
    return {key: value / len(x_test) for key, value in sums.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "book/results/pytorch-reference.json")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train = torch.from_numpy(np.ascontiguousarray(load_mnist("train").x, dtype=np.float32))
    x_test = torch.from_numpy(np.ascontiguousarray(load_mnist("test").x, dtype=np.float32))

    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(args.seed)
    noise = torch.Generator().manual_seed(args.seed + 1)
    batch_size = 128
    history = {"epoch": [], "seconds": [], "train_loss": [], "test_loss": [],
               "test_rec": [], "test_kl": []}
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        total = 0.0
        for idx in torch.randperm(len(x_train), generator=shuffle).split(batch_size):
            xb = x_train[idx]
            eps = torch.randn(len(xb), 20, generator=noise)
            rec, kl = model.terms(xb, eps)
            loss = (rec + kl).mean()                 # the negative ELBO, batch mean
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        seconds = time.perf_counter() - start
        model.eval()
        test = test_terms(model, x_test, torch.Generator().manual_seed(12345))
        history["epoch"].append(epoch)
        history["seconds"].append(seconds)
        history["train_loss"].append(total / len(x_train))
        for key in ("loss", "rec", "kl"):
            history[f"test_{key}"].append(test[key])
        if epoch in REPORTED_EPOCHS:
            print(f"epoch {epoch:2d}: test negative ELBO {test['loss']:.2f} nats "
                  f"(rec {test['rec']:.2f} + KL {test['kl']:.2f}), {seconds:.1f} s")

    command = "python tools/pytorch_reference.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    result = {
        "description": "PyTorch reference for book/09_training_mnist.ipynb: "
                       "784-400-20-400-784 ReLU VAE, Bernoulli decoder on grey-level "
                       "targets, batch 128, Adam lr 1e-3, written by "
                       "tools/pytorch_reference.py",
        "command": command,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": 1e-3,
        "test_negative_elbo": {str(e): history["test_loss"][e - 1]
                               for e in REPORTED_EPOCHS if e <= args.epochs},
        "seconds_per_epoch": float(np.median(history["seconds"])),
        "history": history,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
