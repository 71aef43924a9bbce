"""vae_numpy: a variational autoencoder in NumPy, with backpropagation written by hand.

The pieces, one module each: :mod:`.functional` (layers as forward/backward pairs),
:mod:`.losses`, :mod:`.model` (``Autoencoder``, ``VAE``), :mod:`.optim` (SGD, Adam),
:mod:`.kernels` (numba-fused loops), :mod:`.data` (MNIST), :mod:`.handwriting` (a synthetic set),
:mod:`.objectives` (the ELBO, KL warm-up, free bits, the IWAE bound), :mod:`.train` (``fit``),
:mod:`.evaluate`, :mod:`.reproduce` (published tables), :mod:`.checkpoint`, :mod:`.gradcheck`,
:mod:`.plots` and the command line (``python -m vae_numpy``).
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .data import load_mnist
from .errors import VAEError
from .evaluate import iw_estimate, iw_log_likelihood, negative_elbo
from .handwriting import make_handwriting
from .model import VAE, Autoencoder, ModelConfig
from .objectives import ELBO, IWAE, FreeBits
from .optim import SGD, Adam
from .train import History, fit

__version__ = "0.1.0"

__all__ = [
    "ELBO", "IWAE", "VAE", "Adam", "Autoencoder", "FreeBits", "History", "ModelConfig", "SGD",
    "VAEError",
    "fit", "iw_estimate", "iw_log_likelihood", "load_checkpoint", "load_mnist",
    "make_handwriting", "negative_elbo", "save_checkpoint",
]
