"""The sparse first-layer study: every variant computes the product it is timed for.

Nothing here is timed. The study's numbers are only worth reading if each kernel gives
the dense product, so each is compared with it, on edge cases (an empty row, a row with
fewer non-zeros than the unrolling, a full row) and on MNIST-like pixels.
"""

import numpy as np
import pytest
from test_backends import data, needs_numba

from vae_numpy import bench
from vae_numpy import kernels as K
from vae_numpy import sparse_study as S
from vae_numpy.cli import main

pytestmark = needs_numba


def batch(n=12, d=40, seed=0):
    x = data(n, d, seed)
    x[0] = 0                      # a blank image
    x[1, :] = 0
    x[1, [3, 17, 30]] = 0.5       # fewer non-zeros than either unrolling
    x[2] = np.linspace(0.1, 1, d, dtype=np.float32)   # every pixel inked
    x[3, :] = 0
    x[3, 5:16] = 1.0              # 11 = 8 + 3: one pass of eight and a remainder
    return x


def dense(x, w, b):
    return np.maximum(x @ w + b, 0)


def test_the_builds_describe_the_batch():
    x = batch()
    n, d = x.shape
    ip, ix, iv = np.empty(n + 1, np.int64), np.empty(x.size + 1, np.int32), np.empty(
        x.size + 1, np.float32)
    nnz = S.csr_branchless(x, ip, ix, iv)
    ref = K.csr_from_dense_reference(x)
    assert nnz == np.count_nonzero(x)
    np.testing.assert_array_equal(ip, ref[0])
    np.testing.assert_array_equal(ix[:nnz], ref[1])
    np.testing.assert_array_equal(iv[:nnz], ref[2])

    cp, cr, cv, cf = (np.empty(d + 1, np.int64), np.empty(x.size, np.int32),
                      np.empty(x.size, np.float32), np.empty(d, np.int64))
    assert S.csc_from_dense(x, cp, cr, cv, cf) == nnz
    rows, cols = np.nonzero(x.T)               # column-major order: pixel, then image
    np.testing.assert_array_equal(cr[:nnz], cols)
    np.testing.assert_array_equal(cv[:nnz], x.T[rows, cols])
    np.testing.assert_array_equal(np.diff(cp), np.count_nonzero(x, axis=0))

    r = S.ROW_BLOCK
    bp, bc, bv = (np.empty(n // r + 1, np.int64), np.empty(n // r * d, np.int64),
                  np.empty((n // r * d, r), np.float32))
    S.row_blocks(x, r, bp, bc, bv)
    for blk in range(n // r):
        block = x[blk * r:(blk + 1) * r]
        used = np.flatnonzero((block != 0).any(axis=0))
        k0, k1 = bp[blk], bp[blk + 1]
        np.testing.assert_array_equal(bc[k0:k1], used)
        np.testing.assert_array_equal(bv[k0:k1], block[:, used].T)


@pytest.mark.parametrize("kernel", ["rows1", "rows8", "rows4_checked", "col_blocks",
                                    "row_blocks"])
def test_each_forward_kernel_gives_the_dense_product(kernel):
    x = batch()
    n, d = x.shape
    h = 2 * S.BLOCK_COLS
    rng = np.random.default_rng(1)
    w = rng.standard_normal((d, h), dtype=np.float32)
    b = rng.standard_normal(h, dtype=np.float32)
    ip, ix, iv = K.csr_from_dense(x)
    out = np.full((n, h), np.nan, np.float32)
    if kernel == "rows1":
        S.spmm_rows1(ip, ix, iv, w, b, out)
    elif kernel == "rows8":
        S.spmm_rows8(ip, ix, iv, w, b, out)
    elif kernel == "rows4_checked":
        S.spmm_rows4_checked(ip, ix, iv, w, b, out, 1)
    elif kernel == "col_blocks":
        wb = np.ascontiguousarray(w.reshape(d, 2, S.BLOCK_COLS).transpose(1, 0, 2))
        S.spmm_col_blocks(ip, ix, iv, wb, b, out)
    else:
        r = S.ROW_BLOCK
        bp, bc, bv = (np.empty(n // r + 1, np.int64), np.empty(n // r * d, np.int64),
                      np.empty((n // r * d, r), np.float32))
        S.row_blocks(x, r, bp, bc, bv)
        S.spmm_row_blocks(bp, bc, bv, w, b, out)
    np.testing.assert_allclose(out, dense(x, w, b), rtol=1e-5, atol=1e-5)


def test_the_bounds_checked_kernel_checks_its_bounds():
    # an index past W's last row: the checked copy refuses it (the library's kernel would
    # read past the array); it must not share the library kernel's cached machine code
    ip = np.array([0, 1], np.int64)
    ix = np.array([5], np.int32)
    iv = np.ones(1, np.float32)
    w, b, out = np.ones((3, 16), np.float32), np.zeros(16, np.float32), np.empty((1, 16),
                                                                               np.float32)
    K._spmm_bias_act(np.array([0, 1], np.int64), np.array([2], np.int32), iv, w, b, out, 1)
    with pytest.raises(IndexError):
        S.spmm_rows4_checked(ip, ix, iv, w, b, out, 1)


def test_the_csc_gradient_gives_x_transpose_d_in_any_split():
    x = batch()
    n, d = x.shape
    dd = np.random.default_rng(2).standard_normal((n, 64), dtype=np.float32)
    cp, cr, cv, cf = (np.empty(d + 1, np.int64), np.empty(x.size, np.int32),
                      np.empty(x.size, np.float32), np.empty(d, np.int64))
    S.csc_from_dense(x, cp, cr, cv, cf)
    out = np.full((d, 64), np.nan, np.float32)
    S.csc_grad(cp, cr, cv, dd, out, 0, 7)
    S.csc_grad(cp, cr, cv, dd, out, 7, d)
    np.testing.assert_allclose(out, x.T @ dd, rtol=1e-5, atol=1e-5)


def test_the_study_checks_every_row_and_reports_it():
    x = data(16, 784, seed=3)
    res = S.study(x, hidden=2 * S.BLOCK_COLS, reps=1, rounds=2)
    rows = res["rows"]
    assert {r["part"] for r in rows} == {"forward", "gradient"} and len(rows) == 19
    for r in rows:
        assert r["s"] > 0 and r["vs_range"][0] <= r["vs"] <= r["vs_range"][1]
        if r["madds"]:                       # a product: compared with the dense one
            assert r["rel_err"] < 1e-5, r["name"]
        else:                                # a build: no product to compare
            assert r["rel_err"] is None and "build" in r["name"]
    # the fused step's BLAS row is the yardstick of its table
    assert [r["vs"] for r in rows if "(the fused step)" in r["name"]] == [1.0, 1.0]
    assert res["nnz"] == np.count_nonzero(x)
    fmas = res["zmm_fmas"]["sparse, 4 per pass (the library's kernel)"]
    assert isinstance(fmas, int) and fmas >= 0
    text = S.to_markdown(res, "Measured today.")
    assert text.startswith("Measured today.") and text.count("| Forward") == 1
    assert all(f"| {r['name']} |" in text for r in rows)


def test_the_study_refuses_a_batch_it_cannot_block():
    with pytest.raises(ValueError, match="multiple of 4 rows"):
        S.study(data(10, 784), hidden=2 * S.BLOCK_COLS, reps=1, rounds=1)


def test_bench_sparse_writes_its_report(tmp_path):
    result = bench.run_sparse_study(batch_size=16, reps=1, rounds=1, processes=2,
                                    x=data(64, 784, seed=4))
    res = result["sparse_study"]
    assert res["processes"] == 2 and len(res["runs_vs"]) == 2 and res["batch"] == 16
    assert all(r["round_spread"] == 0 for r in res["rows"])     # one round per process
    for i, row in enumerate(res["rows"]):     # the median of two runs, between them
        a, b = res["runs_vs"][0][i], res["runs_vs"][1][i]
        assert row["vs"] == pytest.approx((a + b) / 2) and row["vs_range"] == [min(a, b),
                                                                               max(a, b)]
    md, js = bench.write_outputs(result, tmp_path, name="sparse", render=bench.sparse_markdown)
    text = md.read_text()
    assert text.startswith("Measured ") and "| Weight gradient" in text
    assert "2 fresh processes, one after the other" in text
    assert '"sparse_study"' in js.read_text()


@pytest.mark.parametrize("argv,pattern", [
    (["--paths", "numba"],
     "--sparse times the first layer's kernels only; leave out --paths and --quick"),
    (["--batch-size", "6"], "--batch-size must be a positive multiple of 4 for --sparse; got 6"),
    (["--gemm-reps", "0"], "--gemm-reps must be >= 1; got 0"),
    (["--processes", "0"], "--processes must be >= 1; got 0"),
])
def test_bench_sparse_refuses_bad_arguments_in_one_line(argv, pattern, tmp_path, capsys):
    code = main(["bench", "--sparse", *argv, "--out", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert code == 2 and err.strip() == f"error: {pattern}" and out == ""
    assert not (tmp_path / "b").exists()


def test_processes_goes_with_sparse_only(tmp_path, capsys):
    code = main(["bench", "--processes", "2", "--out", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert code == 2 and err.strip() == "error: --processes goes with --sparse only"
    assert not (tmp_path / "b").exists()


def test_the_report_warns_when_the_machine_was_busy(tmp_path):
    result = bench.run_sparse_study(batch_size=16, reps=1, rounds=1, processes=1,
                                    x=data(64, 784, seed=5))
    cores = result["machine"]["usable_cores"]
    result["machine"]["load_average"] = [0.1, 0.1, 0.1]
    assert bench.busy_warning(result) == "" and "Warning" not in bench.sparse_markdown(result)
    result["machine"]["load_average"] = [cores + 0.5, 1.0, 1.0]
    text = bench.sparse_markdown(result)
    assert f"the load average before the run was {cores + 0.5:.2f} on {cores} cores" in text
    assert text.index("Warning") < text.index("| Forward")
