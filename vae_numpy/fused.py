"""One training step of the VAE with preallocated buffers and fused kernels.

:meth:`VAE.forward` and :meth:`VAE.backward` in :mod:`vae_numpy.model` are the
readable version: one small function per step of the math, each returning new
arrays. This module computes the same loss and gradients, faster:

* every intermediate array (activations, logits, their gradients) lives in a
  buffer allocated once per batch size and reused by every later step;
* every GEMM goes through BLAS with ``out=``, and a weight gradient is written
  straight into its slot of ``model.grad_flat``, where the fused Adam reads it;
* everything between the GEMMs is one numba kernel per step of the chain rule
  (:mod:`vae_numpy.kernels`): bias + ReLU; ReLU backward + bias gradient; the
  Bernoulli log-likelihood from the logits together with its gradient; the
  reparameterization together with the KL, and their gradients;
* the two heads (``mu`` and ``log_var``) are one GEMM of width 2K;
* the first layer's two GEMMs read only the pixel columns between the first and
  the last one that is non-zero somewhere in the batch (views of ``x`` and ``W1``,
  nothing copied): on MNIST about 9% fewer multiplications in those two GEMMs, and
  exactly the same product.

One GEMM is a numba loop instead of BLAS: the decoder's first layer,
``relu(z @ W + b)`` with only K = 20 terms per output (:data:`NUMBA_GEMMS`). The
benchmark's GEMM table found the loop faster than BLAS followed by NumPy's two
in-place passes for the bias and the ReLU; it does not compare it with BLAS followed
by the one-pass ``kernels.bias_act`` the other layers use, which the speed chapter found
faster on the build machine (the step's time moves by well under 1%). What was measured and left out
(``python -m vae_numpy bench`` prints the numbers): numba matrix products at the
other shapes and a sparse first layer in numba, neither faster than BLAS; gathering
only the non-zero columns (:class:`vae_numpy.kernels.ActiveColumns`, available as
``first_layer="compact"``), which copies x, W1 and its gradient at every step and
whose gain depends on the processor (``bench --paths numba,numba-compact`` measures
it; book/bench/variants.md has one run, a few percent faster there); and splitting
the kernels over two threads (``numba-threads``), no faster. The block of columns
stays the default because it copies nothing and gives the product BLAS would give
on the full width. Two more were tried by hand on the two-core machine the book was
built on
there and left out: running each half of the batch on its own thread with
single-threaded BLAS (a step without Adam took about 3.0 ms instead of 2.6 ms: the work
between the GEMMs does not halve with the batch, and a 64-row GEMM on one core took
only about 10% less than BLAS's own two threads on 128 rows), and Adam with a Newton
reciprocal instead of its division (no faster: Adam is bound by memory traffic, not
by the divider).

A step allocates no NumPy array: only the few Python floats of its result.

:meth:`VAE.loss_and_grads` uses this path when the model's backend has numba on
(``backend="numpy"``, the default) and :func:`supports` the configuration: a VAE
or autoencoder with a Bernoulli decoder and any ``hidden_dims``, in float32. Any
other configuration (a Gaussian or continuous Bernoulli decoder, float64 for
gradient checks, the ``numpy-ref`` or ``cupy`` backend) runs the reference path.

The results agree with the reference path to float32 rounding, not bit for bit:
the kernels use fused multiply-adds and their own ``exp``, and BLAS adds the
first layer's products over fewer terms. A run is bit-identical to the next one
on the same machine with the same number of threads.
"""

from __future__ import annotations

import time

import numpy as np

from . import kernels as K

PHASES = ("data", "forward", "loss", "backward", "optimizer")

#: GEMMs the fused step computes with numba loops instead of BLAS: only where
#: ``python -m vae_numpy bench`` measured numba faster on the machine the book was
#: built on (its GEMM table). "dec1" is the decoder's first layer, ``relu(z @ W + b)``
#: with K = 20 inputs, bias and ReLU applied in the loop (three passes over the output:
#: bias, the sums, ReLU). See the module docstring for what the measurement compared.
NUMBA_GEMMS: frozenset[str] = frozenset({"dec1"})


def supports(model) -> tuple[bool, str]:
    """Whether :class:`FusedStep` can run ``model``, and if not, why not."""
    if not K.have_numba():
        return False, "numba is not installed"
    if not getattr(model.backend, "use_numba", False):
        return False, f"backend {model.backend.name!r} does not use numba"
    if model.dtype != np.float32:
        return False, f"the fused step computes in float32; the model is {model.dtype}"
    if model.config.num_classes:
        return False, "the fused step has no label input; a conditional model takes the " \
                      "readable path"
    if model.config.activation != "relu":
        return False, f"the fused step has ReLU layers only; got {model.config.activation}"
    if model.config.likelihood == "continuous_bernoulli":
        return False, ("the fused step has a Bernoulli decoder only: its loss kernel has no "
                       "continuous Bernoulli normalizer log C(lambda)")
    if model.config.likelihood != "bernoulli":
        return False, f"the fused step has a Bernoulli decoder only; got {model.config.likelihood}"
    return True, ""


class _Buffers:
    """Every array one step needs, for one batch size ``n``."""

    def __init__(self, config, n: int, parts: int, compact: bool = False):
        f32 = np.float32
        D, Kz = config.input_dim, config.latent_dim
        hid = config.hidden_dims
        self.enc = [np.empty((n, h), f32) for h in hid]          # activations (in place)
        self.denc = [np.empty((n, h), f32) for h in hid]         # their gradients
        # the two heads side by side: [mu | log_var], and their gradients likewise
        self.heads = np.empty((n, 2 * Kz), f32)
        self.dheads = np.empty((n, 2 * Kz), f32)
        self.mu, self.log_var = self.heads[:, :Kz], self.heads[:, Kz:]
        self.dmu, self.dlog_var = self.dheads[:, :Kz], self.dheads[:, Kz:]
        self.hm = np.empty((n, Kz), f32)                         # std - 1
        self.z = np.empty((n, Kz), f32)
        self.dz = np.empty((n, Kz), f32)
        dec = tuple(reversed(hid))
        self.dec = [np.empty((n, h), f32) for h in dec]
        self.ddec = [np.empty((n, h), f32) for h in dec]
        self.logits = np.empty((n, D), f32)                      # becomes dlogits in place
        # the loss kernel splits the rows over `parts` threads, each with its own sums
        self.parts = max(1, min(parts, n // 32))
        self.rows = K.split_bounds(n, self.parts)
        self.db_parts = np.empty((self.parts, D), f32)
        self.acc_parts = np.empty((self.parts, D), f32)          # per-pixel NLL sums
        self.kl_acc = np.empty(Kz, f32)                          # per-unit KL sums
        # the first layer, compacted (only for first_layer="compact")
        self.active = K.ActiveColumns(n, D, hid[0], parts) if compact else None


class FusedStep:
    """``step(x, eps) -> (loss, terms, grads)``, the same as ``model.loss_and_grads``.

    Parameters
    ----------
    model : VAE or Autoencoder
        Its parameters and gradients are read and written in place (``model.params``,
        ``model.grads``); load new parameters into the model, never replace the arrays.
    first_layer : {"range", "dense", "compact"}
        How the first layer's two GEMMs read the data: ``"range"`` (default) only the
        columns between the first and the last pixel that is non-zero in the batch
        (views, nothing copied); ``"compact"`` only the columns that hold a non-zero
        (gathered into a buffer, see :class:`vae_numpy.kernels.ActiveColumns`);
        ``"dense"`` all of them. The same product in each case; whether gathering
        pays depends on the machine (book/bench/variants.md: 0.95 of the block's time
        on one), so the default copies nothing.
    threads : int, optional
        Threads for the loss kernel (default :func:`vae_numpy.kernels.kernel_threads`).
    numba_gemms : set of str, optional
        Which GEMMs to compute in numba (default :data:`NUMBA_GEMMS`).

    Attributes
    ----------
    profile : dict or None
        Set to ``dict.fromkeys(PHASES, 0.0)`` to add each phase's seconds into it
        (the benchmark does); None (the default) times nothing.
    """

    def __init__(self, model, *, first_layer: str = "range", threads: int | None = None,
                 numba_gemms=None):
        ok, why = supports(model)
        if not ok:
            raise ValueError(f"the fused step cannot run this model: {why}")
        self.model = model
        self.config = model.config
        self.vae = model.config.kind == "vae"
        self.n_hidden = len(model.config.hidden_dims)
        if first_layer not in ("dense", "range", "compact"):
            raise ValueError(f"first_layer must be dense, range or compact; got {first_layer!r}")
        self.first_layer = first_layer
        # (a numba loop only pays for a short inner dimension: the latent code)
        self.numba_dec1 = ("dec1" in (NUMBA_GEMMS if numba_gemms is None else numba_gemms)
                           and model.config.latent_dim <= 64)
        self.threads = K.kernel_threads() if threads is None else max(1, int(threads))
        self.profile: dict | None = None
        self._buffers: dict[int, _Buffers] = {}
        p, g = model.params, model.grads
        L = self.n_hidden
        self.enc_W = [p[f"enc.W{i}"] for i in range(1, L + 1)]
        self.enc_b = [p[f"enc.b{i}"] for i in range(1, L + 1)]
        self.enc_dW = [g[f"enc.W{i}"] for i in range(1, L + 1)]
        self.enc_db = [g[f"enc.b{i}"] for i in range(1, L + 1)]
        self.dec_W = [p[f"dec.W{i}"] for i in range(1, L + 1)]
        self.dec_b = [p[f"dec.b{i}"] for i in range(1, L + 1)]
        self.dec_dW = [g[f"dec.W{i}"] for i in range(1, L + 1)]
        self.dec_db = [g[f"dec.b{i}"] for i in range(1, L + 1)]
        H, Kz = model.config.hidden_dims[-1], model.config.latent_dim
        if self.vae:
            # mu and log_var as one GEMM (H, 2K) instead of two (H, K): fewer, fuller calls
            self.W_heads = np.empty((H, 2 * Kz), np.float32)
            self.dW_heads = np.empty((H, 2 * Kz), np.float32)

    def buffers(self, n: int) -> _Buffers:
        """The buffers for batch size ``n`` (made on first use, then reused)."""
        buf = self._buffers.get(n)
        if buf is None:
            buf = self._buffers[n] = _Buffers(self.config, n, self.threads,
                                              compact=self.first_layer == "compact")
        return buf

    def _loss_grad(self, buf, x, b_out, db_out, scale: float) -> float:
        """The Bernoulli kernel over row slices, one per thread; sums added in order."""
        rows = buf.rows
        totals = K.run_split(K._bernoulli_nll_grad, [
            (buf.logits[lo:hi], b_out, x[lo:hi], scale, buf.db_parts[t], buf.acc_parts[t])
            for t, (lo, hi) in enumerate(zip(rows[:-1], rows[1:]))])
        if buf.parts == 1:
            db_out[...] = buf.db_parts[0]
        else:
            np.sum(buf.db_parts, axis=0, out=db_out)
        return sum(totals)

    def __call__(self, x, eps=None, *, check: bool = True, beta: float | None = None):
        """One step; ``beta`` weighs the KL for this step instead of ``config.beta``.

        A KL warm-up needs nothing more: the KL kernels take the weight as a number
        (``beta / n``). Free bits (a floor on each unit's batch-mean KL) would need a
        weight per unit in the backward kernel and is not here:
        :class:`vae_numpy.objectives.FreeBits` runs the reference path.
        """
        model = self.model
        if check:
            model.check_input(x)
            if self.vae:
                model._check_noise(eps, x.shape[0])
        if not x.flags.c_contiguous or x.dtype != np.float32:
            # the kernels read rows as contiguous vectors; a strided view is copied once
            x = np.ascontiguousarray(x, dtype=np.float32)
        if eps is not None and not (eps.flags.c_contiguous and eps.dtype == np.float32):
            eps = np.ascontiguousarray(eps, dtype=np.float32)
        prof = self.profile
        clock = time.perf_counter
        t0 = clock() if prof is not None else 0.0
        n = x.shape[0]
        buf = self.buffers(n)
        p, g = model.params, model.grads
        matmul = np.matmul
        beta = model._kl_weight(beta)
        Kz = self.config.latent_dim

        # -- forward: encoder ----------------------------------------------------------
        h = x
        for i, (W, b, a) in enumerate(zip(self.enc_W, self.enc_b, buf.enc)):
            if i == 0 and self.first_layer == "range":
                lo, hi = K.used_range(x)           # pixels outside [lo, hi) are 0 in x
                xc, Wc = x[:, lo:hi], W[lo:hi]     # views: the same product, fewer terms
                matmul(xc, Wc, out=a)
            elif i == 0 and self.first_layer == "compact":
                xc, Wc = buf.active.compact(x, W)  # x[:, cols], W1[cols]: the same product
                matmul(xc, Wc, out=a)
            else:
                matmul(h, W, out=a)
            K._bias_act(a, b, True)                # a = relu(h @ W + b), in place
            h = a
        if self.vae:
            Wh = self.W_heads
            Wh[:, :Kz] = p["enc.W_mu"]
            Wh[:, Kz:] = p["enc.W_log_var"]
            matmul(h, Wh, out=buf.heads)
            if prof is not None:
                t1 = clock()
                prof["forward"] += t1 - t0
                t0 = t1
            kl_total = K._reparameterize_kl(buf.mu, buf.log_var, p["enc.b_mu"],
                                            p["enc.b_log_var"], eps, buf.z, buf.hm, buf.kl_acc)
            if prof is not None:
                t1 = clock()
                prof["loss"] += t1 - t0
                t0 = t1
        else:
            matmul(h, p["enc.W_z"], out=buf.z)
            K._bias_act(buf.z, p["enc.b_z"], False)
            kl_total = 0.0
        # -- forward: decoder ----------------------------------------------------------
        hd = buf.z
        for i, (W, b, a) in enumerate(zip(self.dec_W, self.dec_b, buf.dec)):
            if i == 0 and self.numba_dec1:
                K._matmul_nn(hd, W, b, a, 1)       # relu(z @ W + b) in one numba loop
            else:
                matmul(hd, W, out=a)
                K._bias_act(a, b, True)
            hd = a
        matmul(hd, p["dec.W_out"], out=buf.logits)
        if prof is not None:
            t1 = clock()
            prof["forward"] += t1 - t0
            t0 = t1
        # -- loss and its gradient: the logits become dlogits, in place ----------------
        rec_total = self._loss_grad(buf, x, p["dec.b_out"], g["dec.b_out"], 1.0 / n)
        if prof is not None:
            t1 = clock()
            prof["loss"] += t1 - t0
            t0 = t1
        # -- backward: decoder ---------------------------------------------------------
        dl = buf.logits
        matmul(hd.T, dl, out=g["dec.W_out"])
        matmul(dl, p["dec.W_out"].T, out=buf.ddec[-1])
        for i in range(self.n_hidden - 1, -1, -1):
            K._relu_backward(buf.ddec[i], buf.dec[i], self.dec_db[i])   # dh -> da, db
            inp = buf.dec[i - 1] if i > 0 else buf.z
            matmul(inp.T, buf.ddec[i], out=self.dec_dW[i])
            matmul(buf.ddec[i], self.dec_W[i].T, out=buf.ddec[i - 1] if i > 0 else buf.dz)
        # -- backward: latent layer ----------------------------------------------------
        h = buf.enc[-1]
        dh = buf.denc[-1]
        if self.vae:
            if prof is not None:
                t1 = clock()
                prof["backward"] += t1 - t0
                t0 = t1
            K._reparameterize_kl_backward(buf.dz, eps, buf.mu, buf.hm, beta / n, buf.dmu,
                                          buf.dlog_var, g["enc.b_mu"], g["enc.b_log_var"])
            if prof is not None:
                t1 = clock()
                prof["loss"] += t1 - t0
                t0 = t1
            matmul(h.T, buf.dheads, out=self.dW_heads)
            g["enc.W_mu"][...] = self.dW_heads[:, :Kz]
            g["enc.W_log_var"][...] = self.dW_heads[:, Kz:]
            # h feeds both heads: one GEMM adds what each sends back
            matmul(buf.dheads, Wh.T, out=dh)
        else:
            np.sum(buf.dz, axis=0, out=g["enc.b_z"])
            matmul(h.T, buf.dz, out=g["enc.W_z"])
            matmul(buf.dz, p["enc.W_z"].T, out=dh)
        K._relu_backward(dh, h, self.enc_db[-1])
        # -- backward: encoder ---------------------------------------------------------
        for i in range(self.n_hidden - 1, -1, -1):
            if i == 0 and self.first_layer == "range":
                dW1 = self.enc_dW[0]
                matmul(xc.T, buf.denc[0], out=dW1[lo:hi])
                dW1[:lo] = 0                              # pixels that were 0 throughout
                dW1[hi:] = 0
                continue
            if i == 0 and self.first_layer == "compact":
                dWc = buf.active.grad_view(self.enc_dW[0].shape[1])
                matmul(xc.T, buf.denc[0], out=dWc)
                buf.active.scatter(dWc, self.enc_dW[0])   # rows of unused pixels get 0
                continue
            inp = buf.enc[i - 1] if i > 0 else x
            matmul(inp.T, buf.denc[i], out=self.enc_dW[i])
            if i > 0:  # the data x needs no gradient
                matmul(buf.denc[i], self.enc_W[i].T, out=buf.denc[i - 1])
                K._relu_backward(buf.denc[i - 1], buf.enc[i - 1], self.enc_db[i - 1])
        if prof is not None:
            prof["backward"] += clock() - t0

        rec = rec_total / n
        kl = kl_total / n
        loss = rec + beta * kl
        return np.float32(loss), {"loss": loss, "rec": rec, "kl": kl}, g


def fused_step_for(model) -> FusedStep | None:
    """The model's :class:`FusedStep` (made once and kept on the model), or None."""
    step = model.__dict__.get("_fused_step")
    if step is None:
        if not supports(model)[0]:
            return None
        step = model.__dict__["_fused_step"] = FusedStep(model)
    return step
