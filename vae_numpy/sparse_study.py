"""Why the sparse first layer does not beat BLAS here: each step of it, measured.

The first layer's two products, ``relu(x @ W1 + b)`` and the weight gradient
``x.T @ d``, are 38% of a step's multiply-adds, and 81% of MNIST's pixels are 0. A
sparse product needs about a fifth of the multiply-adds, yet :mod:`vae_numpy.kernels`'
sparse kernels only match BLAS (the benchmark's GEMM table). This module times the
pieces one at a time, on one batch of real MNIST digits, interleaved, so that each
question the speed chapter asks has its own row:

* what building the sparse form of a batch costs (CSR with a branch per pixel, as
  the library does, and without the branch; CSC, column by column);
* whether the kernel is vectorized (the 512-bit multiply-adds in its machine code),
  and what unrolling (1, 4 or 8 non-zeros per pass over an output row) buys;
* bounds checks (the same kernel compiled with ``boundscheck=True``);
* blocking: ``W1`` cut into contiguous blocks of 80 columns, a quarter of L2 each (the
  rows of ``W1`` a batch reads, about 860 KB, nearly fill a 1 MB L2 by themselves), and
  blocks of four rows of ``x`` that load each used row of ``W1`` once for all four;
* two threads instead of one;
* for the gradient, the library's CSR scatter against a CSC kernel that accumulates
  each row of the gradient once.

Every variant's product is compared with the dense one (``rel_err``); the tests
(``tests/test_sparse_study.py``) check them all. ``python -m vae_numpy bench
--sparse`` writes the table; book/bench/sparse.md is one run, which the speed chapter
reads. None of these kernels is used in training: they are here to be measured.
"""

from __future__ import annotations

import numpy as np

from . import kernels as K

_F32 = np.float32
BLOCK_COLS = 80       # W1 (784, 400) in 5 blocks of 80 columns (5 vectors of 16 floats,
#                       no remainder): 251 KB each, a quarter of a 1 MB L2
ROW_BLOCK = 4         # rows of x that share each load of a row of W1


def _jit(fn, **extra):
    if not K.have_numba():
        return fn
    import numba

    return numba.njit(**{**K._FLAGS, "cache": True, **extra})(fn)


# -- building the sparse form of a batch -----------------------------------------------
def _csr_branchless_py(x, indptr, indices, values):
    """CSR of ``x`` without a branch per pixel: every pixel is written, the count
    advances only past the non-zero ones (the next write overwrites a zero)."""
    n, d = x.shape
    k = 0
    for i in range(n):
        indptr[i] = k
        row = x[i]
        for j in range(d):
            v = row[j]
            indices[k] = j
            values[k] = v
            k += v != 0
    indptr[n] = k
    return k


def _csc_py(x, colptr, rows, values, fill):
    """Compressed sparse columns of ``x``: a counting pass, then a filling pass."""
    n, d = x.shape
    for j in range(d + 1):
        colptr[j] = 0
    for i in range(n):
        for j in range(d):
            if x[i, j] != 0:
                colptr[j + 1] += 1
    for j in range(d):
        colptr[j + 1] += colptr[j]
        fill[j] = colptr[j]
    for i in range(n):
        for j in range(d):
            v = x[i, j]
            if v != 0:
                k = fill[j]
                rows[k] = i
                values[k] = v
                fill[j] = k + 1
    return colptr[d]


def _row_blocks_py(x, r, bptr, cols, vals):
    """For each block of ``r`` rows: the pixels non-zero in any of them (``cols``) and
    their ``r`` values each, zeros included (``vals``, one row of ``r`` per pixel)."""
    n, d = x.shape
    zero = _F32(0.0)
    k = 0
    for blk in range(n // r):
        bptr[blk] = k
        i0 = blk * r
        for j in range(d):
            used = False
            for q in range(r):
                if x[i0 + q, j] != zero:
                    used = True
            if used:
                cols[k] = j
                for q in range(r):
                    vals[k, q] = x[i0 + q, j]
                k += 1
    bptr[n // r] = k
    return k


# -- forward kernels: out = relu(x @ W + b) ----------------------------------------------
def _rows1_py(indptr, indices, values, w, b, out):
    """One non-zero per pass over the output row: the row is loaded and stored each time."""
    for i in range(indptr.size - 1):
        o = out[i]
        for j in range(o.shape[0]):
            o[j] = b[j]
        for k in range(indptr[i], indptr[i + 1]):
            K._add1(o, values[k], w[indices[k]])
        K._relu_row(o)


def _rows8_py(indptr, indices, values, w, b, out):
    """Eight non-zeros per pass over the output row."""
    for i in range(indptr.size - 1):
        o = out[i]
        for j in range(o.shape[0]):
            o[j] = b[j]
        k, e = indptr[i], indptr[i + 1]
        while k + 8 <= e:
            a0, a1, a2, a3 = values[k], values[k + 1], values[k + 2], values[k + 3]
            a4, a5, a6, a7 = values[k + 4], values[k + 5], values[k + 6], values[k + 7]
            w0, w1, w2, w3 = w[indices[k]], w[indices[k + 1]], w[indices[k + 2]], w[indices[k + 3]]
            w4, w5 = w[indices[k + 4]], w[indices[k + 5]]
            w6, w7 = w[indices[k + 6]], w[indices[k + 7]]
            for j in range(o.shape[0]):
                o[j] += (((a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j]))
                         + ((a4 * w4[j] + a5 * w5[j]) + (a6 * w6[j] + a7 * w7[j])))
            k += 8
        while k < e:
            K._add1(o, values[k], w[indices[k]])
            k += 1
        K._relu_row(o)


def _col_blocks_py(indptr, indices, values, wb, b, out):
    """The library's kernel (four non-zeros per pass) on ``wb`` (nb, D, BW): W1 cut into
    contiguous blocks of BW columns, each block finished before the next is read."""
    nb, _, bw = wb.shape
    for q in range(nb):
        wq = wb[q]
        j0 = q * bw
        for i in range(indptr.size - 1):
            o = out[i, j0:j0 + bw]
            for j in range(bw):
                o[j] = b[j0 + j]
            k, e = indptr[i], indptr[i + 1]
            while k + 4 <= e:
                a0, a1, a2, a3 = values[k], values[k + 1], values[k + 2], values[k + 3]
                K._add4(o, a0, wq[indices[k]], a1, wq[indices[k + 1]],
                        a2, wq[indices[k + 2]], a3, wq[indices[k + 3]])
                k += 4
            while k < e:
                K._add1(o, values[k], wq[indices[k]])
                k += 1
            K._relu_row(o)


def _row_block_fwd_py(bptr, cols, vals, w, b, out):
    """Blocks of four rows: each used row of W1 is loaded once and multiplied into all
    four output rows (by zero where that row's pixel is 0)."""
    for blk in range(bptr.size - 1):
        o0, o1, o2, o3 = out[4 * blk], out[4 * blk + 1], out[4 * blk + 2], out[4 * blk + 3]
        for j in range(o0.shape[0]):
            o0[j] = b[j]
            o1[j] = b[j]
            o2[j] = b[j]
            o3[j] = b[j]
        for k in range(bptr[blk], bptr[blk + 1]):
            wk = w[cols[k]]
            a0, a1, a2, a3 = vals[k, 0], vals[k, 1], vals[k, 2], vals[k, 3]
            for j in range(o0.shape[0]):
                wj = wk[j]
                o0[j] += a0 * wj
                o1[j] += a1 * wj
                o2[j] += a2 * wj
                o3[j] += a3 * wj
        for o in (o0, o1, o2, o3):
            K._relu_row(o)


# -- gradient kernel: out = x.T @ d, from the CSC of x ------------------------------------
def _csc_grad_py(colptr, rows, values, d, out, lo, hi):
    """Rows ``lo <= p < hi`` of ``x.T @ d``: each is summed over the images where pixel p
    is non-zero, four at a time, and written once."""
    for p in range(lo, hi):
        o = out[p]
        for j in range(o.shape[0]):
            o[j] = _F32(0.0)
        k, e = colptr[p], colptr[p + 1]
        while k + 4 <= e:
            a0, a1, a2, a3 = values[k], values[k + 1], values[k + 2], values[k + 3]
            K._add4(o, a0, d[rows[k]], a1, d[rows[k + 1]], a2, d[rows[k + 2]],
                    a3, d[rows[k + 3]])
            k += 4
        while k < e:
            K._add1(o, values[k], d[rows[k]])
            k += 1


csr_branchless = _jit(_csr_branchless_py)
csc_from_dense = _jit(_csc_py)
row_blocks = _jit(_row_blocks_py)
spmm_rows1 = _jit(_rows1_py)
spmm_rows8 = _jit(_rows8_py)
spmm_col_blocks = _jit(_col_blocks_py)
spmm_row_blocks = _jit(_row_block_fwd_py)
csc_grad = _jit(_csc_grad_py)
#: the library's four-per-pass forward kernel, compiled again with bounds checks on.
#: Never cached: numba's cache key leaves out the compile flags, so a cached copy could
#: be the library's unchecked code (or the library's kernel this one).
spmm_rows4_checked = (_jit(K._spmm_bias_act.py_func, boundscheck=True, cache=False)
                      if K.have_numba() else K._spmm_bias_act)


def zmm_fmas(kernel) -> int | None:
    """How many 512-bit fused multiply-adds (``vfmadd...ps`` on zmm registers) the
    kernel's machine code holds, compiled afresh for its first signature (numba shows
    no machine code for a kernel loaded from its cache); None without numba or before
    the kernel's first call."""
    sigs = getattr(kernel, "signatures", None)
    if not sigs:
        return None
    import numba

    fresh = numba.njit(**{**K._FLAGS, "cache": False})(kernel.py_func)
    fresh.compile(sigs[0])
    asm = fresh.inspect_asm(sigs[0])
    return sum(1 for line in asm.splitlines()
               if "vfmadd" in line and "ps\t" in line and "zmm" in line)


def _nnz_bounds(ptr, parts: int) -> list[int]:
    """Row (or column) boundaries that give each part about as many non-zeros."""
    total = int(ptr[-1])
    inner = [int(np.searchsorted(ptr, total * q // parts)) for q in range(1, parts)]
    return [0, *inner, ptr.size - 1]


def _l2_bytes() -> int | None:
    """The first core's L2 cache in bytes, from Linux's sysfs; None where it is not told."""
    from pathlib import Path

    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": 1024, "M": 1024 ** 2}.get(size[-1:], 1)
        digits = size.rstrip("KM")
        return int(digits) * mult if digits.isdigit() else None
    return None


def study(x, *, hidden: int = 400, reps: int = 50, rounds: int = 5, seed: int = 0) -> dict:
    """Time each variant on the batch ``x`` (n, D), n a multiple of 4, interleaved.

    Each of ``rounds`` rounds calls every row of a table in turn, ``reps`` times, and
    takes each row's median. Returns ``{"rows": [...], "batch": n, "nnz": ..., ...}``;
    each row has ``part`` (forward or gradient), ``name``, ``s`` (median seconds over
    the rounds), ``madds`` (multiply-adds it performs: non-zeros x width for the
    sparse kernels, the dense count for BLAS), ``vs`` (the median over the rounds of
    its time over the BLAS row the fused step uses, ``vs_range`` their least and
    greatest) and ``rel_err`` against the dense product.
    """
    from .bench import time_interleaved

    x = np.ascontiguousarray(x, dtype=_F32)
    n, d = x.shape
    if n % ROW_BLOCK or hidden % BLOCK_COLS:
        raise ValueError(f"the batch must be a multiple of {ROW_BLOCK} rows and the width "
                         f"of {BLOCK_COLS}; got {n} rows, width {hidden}")
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((d, hidden), dtype=_F32) * _F32(0.05))
    b = (rng.standard_normal(hidden, dtype=_F32) * _F32(0.05))
    dd = rng.standard_normal((n, hidden), dtype=_F32)
    wb = np.ascontiguousarray(w.reshape(d, hidden // BLOCK_COLS, BLOCK_COLS).transpose(1, 0, 2))
    lo, hi = (int(v) for v in K.used_range(x))

    ref = np.empty((n, hidden), _F32)
    np.matmul(x, w, out=ref)
    K._bias_act(ref, b, True)
    gref = x.T @ dd

    ip, ix, iv = (np.empty(n + 1, np.int64), np.empty(x.size + 1, np.int32),
                  np.empty(x.size + 1, _F32))
    nnz = K._csr_from_dense(x, ip, ix, iv)
    cp, cr, cv, cf = (np.empty(d + 1, np.int64), np.empty(x.size, np.int32),
                      np.empty(x.size, _F32), np.empty(d, np.int64))
    csc_from_dense(x, cp, cr, cv, cf)
    bp, bc, bv = (np.empty(n // ROW_BLOCK + 1, np.int64), np.empty(n // ROW_BLOCK * d, np.int64),
                  np.empty((n // ROW_BLOCK * d, ROW_BLOCK), _F32))
    nb = row_blocks(x, ROW_BLOCK, bp, bc, bv)
    sp = (ip, ix, iv)
    out_f = {k: np.empty((n, hidden), _F32)
             for k in ("dense", "range", "r1", "r4", "r8", "r4c", "cb", "rb", "t2", "lib")}
    out_g = {k: np.empty((d, hidden), _F32) for k in ("gd", "gr", "gs", "gc", "gc2")}
    dense_madds = n * d * hidden
    range_madds = n * (hi - lo) * hidden
    sparse_madds = int(nnz) * hidden

    halves = _nnz_bounds(ip, 2)
    pix_halves = _nnz_bounds(cp, 2)
    p_ip, p_ix, p_iv = (np.empty_like(ip), np.empty_like(ix), np.empty_like(iv))
    # each row: (name, its output in out_f / out_g or None for a build, multiply-adds, call)
    fwd = [
        ("BLAS, all 784 columns, then the bias and ReLU kernel", "dense", dense_madds,
         lambda o=out_f["dense"]: (np.matmul(x, w, out=o), K._bias_act(o, b, True))),
        (f"BLAS on the {hi - lo} used columns, {lo} to {hi - 1} (the fused step)", "range",
         range_madds, lambda o=out_f["range"]: (np.matmul(x[:, lo:hi], w[lo:hi], out=o),
                                                K._bias_act(o, b, True))),
        ("CSR build, a branch per pixel (the library's)", None, 0,
         lambda: K._csr_from_dense(x, p_ip, p_ix, p_iv)),
        ("CSR build, branchless", None, 0, lambda: csr_branchless(x, p_ip, p_ix, p_iv)),
        ("sparse, 1 non-zero per pass", "r1", sparse_madds,
         lambda o=out_f["r1"]: spmm_rows1(*sp, w, b, o)),
        ("sparse, 4 per pass (the library's kernel)", "r4", sparse_madds,
         lambda o=out_f["r4"]: K._spmm_bias_act(*sp, w, b, o, 1)),
        ("sparse, 8 per pass", "r8", sparse_madds,
         lambda o=out_f["r8"]: spmm_rows8(*sp, w, b, o)),
        ("sparse, 4 per pass, bounds checked", "r4c", sparse_madds,
         lambda o=out_f["r4c"]: spmm_rows4_checked(*sp, w, b, o, 1)),
        (f"sparse, 4 per pass, W1 in blocks of {BLOCK_COLS} columns", "cb", sparse_madds,
         lambda o=out_f["cb"]: spmm_col_blocks(*sp, wb, b, o)),
        (f"row blocks of {ROW_BLOCK}: each used W1 row loaded once for {ROW_BLOCK} rows",
         "rb", int(nb) * ROW_BLOCK * hidden,
         lambda o=out_f["rb"]: spmm_row_blocks(bp, bc, bv, w, b, o)),
        ("row-block build", None, 0, lambda: row_blocks(x, ROW_BLOCK, bp, bc, bv)),
        ("sparse, 4 per pass, rows split over 2 threads", "t2", sparse_madds,
         lambda o=out_f["t2"]: K.run_split(K._spmm_bias_act, [
             (ip[r0:r1 + 1], ix, iv, w, b, o[r0:r1], 1)
             for r0, r1 in zip(halves[:-1], halves[1:])])),
        ("the library's build + 4 per pass (what using it costs)", "lib", sparse_madds,
         lambda o=out_f["lib"]: K.spmm_bias_act(K.csr_from_dense(x, p_ip, p_ix, p_iv),
                                                w, b, o, True)),
    ]
    c_cp, c_cr, c_cv, c_cf = (np.empty_like(cp), np.empty_like(cr), np.empty_like(cv),
                              np.empty_like(cf))
    grad = [
        ("BLAS, all 784 rows", "gd", dense_madds,
         lambda o=out_g["gd"]: np.matmul(x.T, dd, out=o)),
        (f"BLAS on the {hi - lo} used rows, {lo} to {hi - 1} (the fused step)", "gr",
         range_madds, lambda o=out_g["gr"]: (np.matmul(x[:, lo:hi].T, dd, out=o[lo:hi]),
                                             o[:lo].fill(0), o[hi:].fill(0))),
        ("CSR scatter (the library's), CSR prebuilt", "gs", sparse_madds,
         lambda o=out_g["gs"]: K._spmm_tn(*sp, dd, o)),
        ("CSC build", None, 0, lambda: csc_from_dense(x, c_cp, c_cr, c_cv, c_cf)),
        ("CSC, each gradient row summed once, CSC prebuilt", "gc", sparse_madds,
         lambda o=out_g["gc"]: csc_grad(cp, cr, cv, dd, o, 0, d)),
        ("CSC, pixels split over 2 threads, CSC prebuilt", "gc2", sparse_madds,
         lambda o=out_g["gc2"]: K.run_split(csc_grad, [
             (cp, cr, cv, dd, o, p0, p1) for p0, p1 in zip(pix_halves[:-1], pix_halves[1:])])),
    ]
    rows = []
    for part, table, outs, refv in (("forward", fwd, out_f, ref),
                                    ("gradient", grad, out_g, gref)):
        per_round = [time_interleaved({name: call for name, _, _, call in table}, reps)
                     for _ in range(rounds)]
        base = table[1][0]                 # the BLAS product the fused step runs
        for name, key, madds, _ in table:
            err = None
            if key is not None:
                o = outs[key]
                err = float(np.abs(o - refv).max() / max(float(np.abs(refv).max()), 1e-30))
            ratios = [t[name] / t[base] for t in per_round]
            rows.append({"part": part, "name": name,
                         "s": float(np.median([t[name] for t in per_round])), "madds": madds,
                         "vs": float(np.median(ratios)),
                         "vs_range": [float(min(ratios)), float(max(ratios))],
                         "rel_err": err})
    return {
        "rows": rows, "batch": n, "pixels": d, "hidden": hidden, "nnz": int(nnz),
        "density": int(nnz) / x.size, "used_range": [lo, hi],
        "row_block_pixels": int(nb), "w1_bytes": w.nbytes, "l2_bytes": _l2_bytes(),
        "block_cols": BLOCK_COLS,
        # the rows of W1 a batch reads at all: its pixels non-zero in some image
        "used_pixels": int(np.count_nonzero((x != 0).any(axis=0))),
        "zmm_fmas": {"sparse, 4 per pass (the library's kernel)": zmm_fmas(K._spmm_bias_act),
                     "CSC gradient": zmm_fmas(csc_grad)},
        "reps": reps, "rounds": rounds,
    }


def combine(runs: list[dict]) -> dict:
    """One study from several (fresh processes): each row's median over the runs, and
    the least and greatest of their ratios as ``vs_range``; ``runs_vs`` keeps every
    run's ratios, row by row."""
    first = runs[0]
    rows = []
    for i, row in enumerate(first["rows"]):
        same = [r["rows"][i] for r in runs]
        assert all(r["name"] == row["name"] for r in same), "the runs timed different rows"
        errs = [r["rel_err"] for r in same if r["rel_err"] is not None]
        rows.append({**row, "s": float(np.median([r["s"] for r in same])),
                     "vs": float(np.median([r["vs"] for r in same])),
                     "vs_range": [min(r["vs"] for r in same), max(r["vs"] for r in same)],
                     # the widest spread of this row's ratios between rounds of one process
                     "round_spread": max(r["vs_range"][1] - r["vs_range"][0] for r in same),
                     "rel_err": max(errs) if errs else None})
    return {**first, "rows": rows, "processes": len(runs),
            "runs_vs": [[r["vs"] for r in run["rows"]] for run in runs]}


def _how_timed(res: dict) -> str:
    rounds = (f"{res['rounds']} rounds, each calling every row of a table in turn "
              f"{res['reps']} times")
    if res.get("processes", 1) > 1:
        spread = max(r["round_spread"] for r in res["rows"])
        return (f"{res['processes']} fresh processes, one after the other, each timing "
                f"{rounds}; µs is the median over the processes of each row's median time, the "
                "ratio the median of the processes' ratios, and the range their least and "
                f"greatest (within one process, a row's ratios differed by at most "
                f"{spread:.2f} between rounds).")
    return (f"One process timing {rounds}; µs is the median over the rounds of each row's "
            "median time, the ratio the median of the rounds' ratios, and the range their "
            "least and greatest.")


def to_markdown(res: dict, machine: str = "") -> str:
    """The study as a Markdown report: the setting, the two tables, the machine code."""
    n, d, h = res["batch"], res["pixels"], res["hidden"]
    lines = []
    if machine:
        lines += [machine, ""]
    l2 = res["l2_bytes"]
    lines += [
        f"One batch of {n} MNIST training digits, {d} pixels, {res['nnz']:,} of them "
        f"non-zero ({res['density']:.1%}); W1 is {d} x {h} float32 "
        f"({res['w1_bytes'] / 1e6:.2f} MB, of which the batch reads the rows of its "
        f"{res['used_pixels']} inked pixels, {res['used_pixels'] * h * 4 / 1e3:.0f} KB; L2 per "
        f"core {'unknown' if l2 is None else f'{l2 / 1e6:.2f} MB'}). "
        f"{_how_timed(res)} A build "
        "row is the sparse form alone; a 'prebuilt' or kernel row leaves it out. Blocks of "
        f"{ROW_BLOCK} rows share each used W1 row: {res['row_block_pixels']:,} (pixel, block) "
        f"pairs, {res['row_block_pixels'] * ROW_BLOCK / res['nnz']:.1f}x the non-zeros.",
        "",
    ]
    for part, title in (("forward", "Forward, relu(x @ W1 + b)"),
                        ("gradient", "Weight gradient, x.T @ d")):
        lines += [f"| {title} | µs | multiply-adds (M) | G multiply-adds/s | / fused step's "
                  "BLAS | range | max rel. error |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            if r["part"] != part:
                continue
            rate = (f"{r['madds'] / r['s'] / 1e9:.1f}" if r["madds"] else "—")
            madds = f"{r['madds'] / 1e6:.1f}" if r["madds"] else "—"
            err = "—" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
            lo, hi = r["vs_range"]
            lines.append(f"| {r['name']} | {1e6 * r['s']:.0f} | {madds} | {rate} | "
                         f"{r['vs']:.2f} | {lo:.2f}–{hi:.2f} | {err} |")
        lines.append("")
    lib = next(r for r in res["rows"] if r["name"].startswith("sparse, 4 per pass (the"))
    traffic = res["nnz"] * h * 4
    lines.append(f"The sparse kernels read a row of W1 ({h * 4:,} bytes) for every non-zero "
                 f"pixel: {traffic / 1e6:.1f} MB per batch, {traffic / lib['s'] / 1e9:.0f} GB/s "
                 "at the library kernel's time.")
    lines.append("")
    z = res["zmm_fmas"]
    lines.append("512-bit fused multiply-adds in the compiled machine code: " + "; ".join(
        f"{k}: {'not compiled' if v is None else v}" for k, v in z.items()) + ".")
    return "\n".join(lines) + "\n"
