"""`python -m vae_numpy reproduce iwae` with a tiny budget: the CI smoke test of the long run.

The real run (thousands of epochs, k = 5000 over 10,000 digits) is not part of CI; its
results are committed in book/results/. These tests run the same command on a few
hundred digits and check what it writes, that it resumes bit for bit, and that it
refuses to mix runs of different settings.
"""

import json

import numpy as np
import pytest

from vae_numpy import cli, reproduce, train
from vae_numpy.checkpoint import load_checkpoint

TINY = ["--epochs", "3", "--limit", "300", "--eval-limit", "40", "--eval-k", "20",
        "--batch-size", "50", "--no-progress"]


def run(tmp_path, *extra, name="w"):
    argv = ["reproduce", "iwae", *TINY, "--work", str(tmp_path / name),
            "--results", str(tmp_path / "results"), *extra]
    return cli.main(argv)


def test_smoke_run_writes_both_rows(tmp_path, capsys):
    assert run(tmp_path) == 0
    doc = json.loads((tmp_path / "results" / "iwae-table1.json").read_text())
    rows = {r["row"]: r for r in doc["rows"]}
    assert set(rows) == {"vae", "iwae"}
    assert rows["vae"]["k"] == 1 and rows["iwae"]["k"] == 5
    for r in rows.values():
        assert r["eval_k"] == 20 and r["eval_examples"] == 40 and r["epochs"] == 3
        assert r["updates"] == 3 * 6
        assert np.isfinite(r["test_nll"]) and r["test_nll_stderr"] > 0
        # the IW bound is tighter than the one-sample ELBO (the same test digits)
        assert r["test_nll"] < r["test_negative_elbo"]
        assert len(r["learning_curve"]["test_negative_elbo"]) == 3
        assert 0 <= r["active_units"] <= 50
    assert doc["commands"]["vae"].startswith("python -m vae_numpy reproduce iwae --epochs 3")
    md = (tmp_path / "results" / "iwae-table1.md").read_text()
    assert "| VAE | 1 |" in md and "| IWAE | 5 |" in md and "86.76" in md
    # a second call finds both rows done and trains nothing
    capsys.readouterr()
    assert run(tmp_path) == 0
    assert "finished before" in capsys.readouterr().out


def test_interrupted_row_resumes_bit_for_bit(tmp_path, monkeypatch, capsys):
    assert run(tmp_path, "--rows", "vae", name="straight") == 0
    real_fit = train.fit

    def stop_after_two(*args, **kwargs):
        def stop(epoch, model, history):
            if epoch == 2:
                raise KeyboardInterrupt

        return real_fit(*args, **{**kwargs, "callbacks": [stop]})

    monkeypatch.setattr(train, "fit", stop_after_two)
    assert run(tmp_path, "--rows", "vae", name="resumed") == 130   # interrupted
    assert load_checkpoint(tmp_path / "resumed" / "vae" / "checkpoint.npz").epoch == 2
    monkeypatch.setattr(train, "fit", real_fit)
    capsys.readouterr()
    assert run(tmp_path, "--rows", "vae", name="resumed") == 0
    out = capsys.readouterr().out
    assert "epoch   3" in out and "epoch   1" not in out   # it went on from epoch 2
    a = load_checkpoint(tmp_path / "straight" / "vae" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "resumed" / "vae" / "checkpoint.npz")
    assert a.epoch == b.epoch == 3
    for name, p in a.model.params.items():
        assert np.array_equal(p, b.model.params[name]), name
    ra = json.loads((tmp_path / "straight" / "vae" / "result.json").read_text())
    rb = json.loads((tmp_path / "resumed" / "vae" / "result.json").read_text())
    assert ra["test_nll"] == rb["test_nll"]


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
    assert run(tmp_path, "--rows", "vae") == 0
    argv = ["reproduce", "iwae", *TINY, "--work", str(tmp_path / "w"), "--rows", "vae",
            "--results", str(tmp_path / "results"), "--seed", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other settings" in err and err.count("\n") == 1


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--eval-k", "0"),
                                         ("--limit", "1"), ("--batch-size", "0")])
def test_bad_budgets_are_one_line_errors(tmp_path, capsys, flag, value):
    argv = ["reproduce", "iwae", "--work", str(tmp_path / "w"), flag, value]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and flag in err and err.count("\n") == 1
    assert not (tmp_path / "w").exists()


def test_schedules():
    lr = reproduce.learning_rate
    # the paper's: 3^i epochs at 1e-3 * 10^(-i/7), exact at 3280 epochs
    assert lr(1, 3280, "paper") == pytest.approx(1e-3)
    assert lr(2, 3280, "paper") == lr(4, 3280, "paper") == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert lr(5, 3280, "paper") == pytest.approx(1e-3 * 10 ** (-2 / 7))
    assert lr(1093, 3280, "paper") == pytest.approx(1e-3 * 10 ** (-6 / 7))
    assert lr(1094, 3280, "paper") == lr(3280, 3280, "paper") == pytest.approx(1e-4)
    # short: half the run at 1e-3, then seven equal stages down to 1e-4
    assert lr(600, 1200, "short") == 1e-3
    assert lr(601, 1200, "short") == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert lr(1200, 1200, "short") == pytest.approx(1e-4)
    stages = [lr(e, 1400, "short") for e in range(701, 1401)]
    assert [stages.count(v) for v in sorted(set(stages), reverse=True)] == [100] * 7
