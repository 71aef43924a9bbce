"""Checkpoints: one ``.npz`` file, readable with ``allow_pickle=False``.

Keys in the archive:

==================  ==========================================================
``param/<name>``    every model parameter under its name (see :mod:`.model`)
``optim/<key>``     the optimizer's state (``optim/t``, ``optim/m/<name>``, ...)
``config``          the model configuration, a JSON string (0-d unicode array)
``meta``            a JSON string: format version, epoch, optimizer settings,
                    the state of the training RNG, the training history, how the
                    data were made (``data``: dataset, binarization protocol and
                    its seed) and the training objective (``objective``: its
                    ``settings()``: name, k, and ``kl_warmup``, ``free_bits``
                    for the ELBO family; see :mod:`.objectives`)
==================  ==========================================================

Files are written atomically (:func:`vae_numpy.io.atomic_write`), so an
interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError
from .io import atomic_write
from .model import ModelConfig, make_model

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    model: object
    epoch: int = 0
    optimizer: dict = field(default_factory=dict)        # settings: type, lr, ...
    optimizer_state: dict = field(default_factory=dict)  # arrays, for load_state_dict
    rng_state: dict | None = None
    history: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)        # dataset, protocol, seed
    objective: dict = field(default_factory=dict)   # name, k, kl_warmup, free_bits

    def restore_rng(self) -> np.random.Generator:
        """A generator in the saved state (a fresh PCG64 seeded 0 if none was saved)."""
        rng = np.random.default_rng(0)
        if self.rng_state is not None:
            rng.bit_generator.state = self.rng_state
        return rng


def save_checkpoint(path, model, *, optimizer=None, epoch: int = 0, rng=None,
                    history: dict | None = None, data: dict | None = None,
                    objective: dict | None = None) -> Path:
    """Write ``model`` (and the training state, if given) to ``path`` atomically."""
    path = Path(path)
    arrays = {f"param/{k}": model.backend.asnumpy(v) for k, v in model.params.items()}
    opt_meta = {}
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
        opt_meta = {"type": type(optimizer).__name__, "lr": optimizer.lr}
        for attr in ("b1", "b2", "eps", "momentum"):
            if hasattr(optimizer, attr):
                opt_meta[attr] = getattr(optimizer, attr)
    meta = {
        "format": FORMAT_VERSION,
        "dtype": str(model.dtype),
        "epoch": int(epoch),
        "optimizer": opt_meta,
        "rng_state": rng.bit_generator.state if rng is not None else None,
        "history": history or {},
        "data": data or {},
        "objective": objective or {},
    }
    arrays["config"] = np.array(model.config.to_json())
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def load_checkpoint(path, *, backend=None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; give the path of a .npz file that "
                              "'python -m vae_numpy train' wrote")
    npy_shape = _npy_shape(path)
    if npy_shape is not None:
        raise CheckpointError(f"{path} is a .npy array of shape {npy_shape}, not a checkpoint; "
                              "give the checkpoint.npz that 'python -m vae_numpy train' wrote")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, AttributeError,
            TypeError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({err}); it may be "
                              "truncated or not a vae_numpy checkpoint") from err
    if "config" not in data or "meta" not in data:
        raise CheckpointError(f"{path} is an .npz file but not a vae_numpy checkpoint "
                              "(no 'config' or 'meta' entry)")
    try:
        config = ModelConfig.from_json(str(data["config"]))
        meta = json.loads(str(data["meta"]))
    except (ValueError, TypeError, ConfigError) as err:
        raise CheckpointError(f"{path}: the stored configuration is invalid ({err})") from err
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')}; "
                              f"this version of vae_numpy reads format {FORMAT_VERSION}")
    _check_finite(path, data)
    model = make_model(config, 0, dtype=np.dtype(meta.get("dtype", "float32")), backend=backend)
    model.load_params({k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")})
    return Checkpoint(
        model=model,
        epoch=int(meta.get("epoch", 0)),
        optimizer=meta.get("optimizer", {}),
        optimizer_state={k[len("optim/"):]: v for k, v in data.items() if k.startswith("optim/")},
        rng_state=meta.get("rng_state"),
        history=meta.get("history", {}),
        data=meta.get("data", {}),
        objective=meta.get("objective", {}),
    )


def _npy_shape(path: Path):
    """The shape of the array if ``path`` is a ``.npy`` file (by its magic bytes), else None."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                return None
    except OSError:
        return None  # np.load reports it
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except (OSError, ValueError):
        return "unknown"


def _check_finite(path: Path, data: dict) -> None:
    """Raise :class:`CheckpointError` naming every parameter or moment that is not finite.

    Training never saves a diverged model (:func:`vae_numpy.train.fit` stops first), so
    a NaN here means the file was damaged or written by other code; a model loaded
    from it would compute NaN everywhere and report, say, no active units.
    """
    bad, wrong_type = [], []
    for key, value in data.items():
        if not key.startswith(("param/", "optim/")) or key == "optim/t":
            continue
        if value.dtype.kind not in "fiu":
            wrong_type.append(f"{key} ({value.dtype})")
        elif value.dtype.kind == "f" and not np.isfinite(value).all():
            n_bad = int(value.size - np.isfinite(value).sum())
            bad.append(f"{key} ({n_bad} of {value.size})")
    if wrong_type:
        raise CheckpointError(f"{path}: entries {', '.join(wrong_type)} are not numbers; it is "
                              "not a checkpoint that vae_numpy wrote")
    if bad:
        raise CheckpointError(f"{path}: {', '.join(bad)} hold NaN or infinite values; the "
                              "file is damaged or was written after training diverged. Use an "
                              "earlier checkpoint or train again")


def load_into(model, path) -> Checkpoint:
    """Load the parameters of the checkpoint at ``path`` into ``model``.

    Raises :class:`CheckpointError` when the checkpoint holds another architecture.
    """
    ckpt = load_checkpoint(path, backend=model.backend)
    if ckpt.model.config != model.config:
        raise CheckpointError(
            f"{path} holds a model of another architecture: {ckpt.model.config.to_json()}; "
            f"this model is {model.config.to_json()}"
        )
    model.load_params({k: ckpt.model.backend.asnumpy(v) for k, v in ckpt.model.params.items()})
    return ckpt
