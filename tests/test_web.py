"""What the static pages compute: assets, the decoder and the answer boxes' judge.

The JavaScript (book/web/vae-book.js) runs here under Node when it is installed, else
in headless Chromium, so its decoder and its judge are held against NumPy's and
NumberCheck's on many inputs; tests/test_browser.py drives the same file in pages.
"""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vae_numpy import web
from vae_numpy.exercises import NumberCheck
from vae_numpy.model import VAE, ModelConfig

SCRIPT = Path(__file__).resolve().parents[1] / "book" / "web" / "vae-book.js"
# VAE_NUMPY_NO_NODE=1 runs the JavaScript in Chromium even where Node is installed.
NODE = shutil.which("node") if not os.environ.get("VAE_NUMPY_NO_NODE") else None
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium"
                                        if Path("/usr/bin/chromium").exists() else None)
try:
    import playwright.sync_api
except ImportError:  # pragma: no cover - depends on the machine
    playwright = None
needs_js = pytest.mark.skipif(NODE is None and (CHROMIUM is None or playwright is None),
                              reason="no JavaScript engine: neither Node.js nor Chromium "
                                     "with playwright is installed")

# vae-book.js expects a page; under Node a stub document with no elements is enough.
HARNESS = """
globalThis.window = globalThis;
globalThis.document = {currentScript: null, readyState: "complete",
                       querySelectorAll: () => [], head: {appendChild: () => {}}};
require(process.argv[process.argv.length - 1]);
const job = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
if (job.judge) out.judge = job.judge.cases.map(t => window.VAE_BOOK.judge(job.judge.check, t));
if (job.decode) {
  const d = window.VAE_BOOK.makeDecoder(job.decode.asset);
  out.decode = job.decode.z.map(z => Array.from(d.decode(z)));
}
process.stdout.write(JSON.stringify(out));
"""


def run_js(job: dict) -> dict:
    """Run vae-book.js's judge and decoder on ``job``, under Node or in Chromium."""
    if NODE is not None:
        proc = subprocess.run([NODE, "-e", HARNESS, "--", str(SCRIPT)], input=json.dumps(job),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    with playwright.sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.add_script_tag(path=str(SCRIPT))
        out = page.evaluate("""job => { const out = {};
            if (job.judge) out.judge = job.judge.cases.map(
                t => window.VAE_BOOK.judge(job.judge.check, t));
            if (job.decode) { const d = window.VAE_BOOK.makeDecoder(job.decode.asset);
                out.decode = job.decode.z.map(z => Array.from(d.decode(z))); }
            return out; }""", job)
        browser.close()
    return out


def small_vae(activation="relu", likelihood="bernoulli", seed=0):
    config = ModelConfig(input_dim=49, hidden_dims=(16, 8), latent_dim=3,
                         activation=activation, likelihood=likelihood)
    model = VAE(config, rng=seed)
    rng = np.random.default_rng(seed)
    for p in model.params.values():       # not the initial weights: biases non-zero too
        p[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.5
    return model


# -- assets --------------------------------------------------------------------------------
def test_grey_arrays_are_stored_as_bytes():
    a = np.random.default_rng(1).random((4, 7))
    d = web.encode_array(a, grey=True)
    assert len(d["u8"]) < len(web.encode_array(a)["f32"]) / 3
    np.testing.assert_allclose(web.decode_array(d), a, atol=0.5 / 255)
    with pytest.raises(ValueError, match="grey=True stores values in \\[0, 1\\]"):
        web.encode_array(a + 0.5, grey=True)


def test_arrays_round_trip_as_float32():
    a = np.random.default_rng(1).standard_normal((3, 5))
    d = web.encode_array(a)
    assert d["shape"] == [3, 5]
    np.testing.assert_array_equal(web.decode_array(d), a.astype(np.float32))


def test_export_writes_a_whole_asset_or_nothing(tmp_path, monkeypatch):
    path = web.export_asset("ch0-test", {"x": [1, 2]}, folder=tmp_path)
    assert path == tmp_path / "ch0-test.js" and web.read_asset(path) == {"x": [1, 2]}
    assert 'VAE_BOOK_ASSETS || {})["ch0-test"] = ' in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o644            # readable by a web server

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(web.os, "replace", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        web.export_asset("ch0-test", {"x": [3]}, folder=tmp_path)
    assert web.read_asset(path) == {"x": [1, 2]}           # the old asset is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ch0-test.js"]   # no temporary left


@pytest.mark.parametrize("name", ["Ch10", "a b", "../x", "", "-x"])
def test_asset_names_are_checked(name, tmp_path):
    with pytest.raises(ValueError, match="lower-case letters, digits and '-'"):
        web.export_asset(name, {}, folder=tmp_path)


def test_non_finite_data_is_refused(tmp_path):
    with pytest.raises(ValueError):
        web.export_asset("bad", {"x": float("nan")}, folder=tmp_path)
    assert not list(tmp_path.iterdir())


def test_explorer_and_answer_box_html_carry_their_settings():
    html = web.explorer("kl", mu=1.0, sigma=0.5)
    assert 'class="vae-explorer" data-kind="kl"' in html and html._repr_html_() == str(html)
    assert "&quot;mu&quot;: 1.0" in html and "no kernel" in html
    check = NumberCheck(2.5, digits=2, hints=[(1.0, "a <b> & 'c'")])
    box = web.answer_box(check, label="KL in nats", variable="answer_ex1")
    assert "answer_ex1" in box and "&lt;b&gt; &amp; &#x27;c&#x27;" in box
    with pytest.raises(ValueError):
        web.explorer("Bad Kind")


@pytest.mark.parametrize("activation,likelihood", [("relu", "bernoulli"), ("tanh", "gaussian")])
def test_an_exported_decoder_is_the_models(activation, likelihood):
    model = small_vae(activation, likelihood)
    z = np.random.default_rng(3).standard_normal((5, 3))
    np.testing.assert_allclose(web.decode_asset(web.decoder_asset(model), z),
                               web.decoded_images(model, z), atol=1e-5, rtol=0)


def test_a_continuous_bernoulli_decoder_is_not_exported_as_if_it_were_a_bernoulli_one():
    from vae_numpy.errors import ConfigError
    from vae_numpy.losses import continuous_bernoulli_mean

    model = small_vae("relu", "continuous_bernoulli")
    with pytest.raises(ConfigError, match="continuous_bernoulli decoder's mean image"):
        web.decoder_asset(model)
    z = np.random.default_rng(3).standard_normal((4, 3))
    logits = model.decode(z.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(web.decoded_images(model, z), continuous_bernoulli_mean(logits))


# -- the decoder in JavaScript ---------------------------------------------------------------
@needs_js
@pytest.mark.parametrize("activation,likelihood", [("relu", "bernoulli"), ("tanh", "bernoulli"),
                                                   ("relu", "gaussian")])
def test_the_pages_decoder_equals_numpys(activation, likelihood):
    model = small_vae(activation, likelihood)
    z = np.random.default_rng(2).standard_normal((6, 3)) * 2
    z[0] = 0.0                                       # the zero code skips every row of W1
    got = np.array(run_js({"decode": {"asset": web.decoder_asset(model),
                                      "z": z.tolist()}})["decode"])
    want = web.decoded_images(model, z)
    assert got.shape == want.shape == (6, 49)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


# -- the answer boxes' judge ---------------------------------------------------------------
CHECKS = [
    NumberCheck(0.31830988618, digits=3, hints=[(0.5, "That is the mean term alone."),
                                                (1 / 0.31830988618, "Turn the ratio round.")],
                success="Why it is right.", fallback="Start from (7.3)."),
    NumberCheck(473618.0, digits=4, rtol=1e-6, hints=[(473618 / 2, "Half of it.")]),
    NumberCheck(-2.5e-4, rtol=1e-2, hints=[(2.5e-4, "The sign.")]),
    NumberCheck(12.0, atol=0.5, digits=None),
]


def typed_cases(check: NumberCheck) -> list[str]:
    w = check.want
    cases = [repr(w), f"{w:.2f}", f"{w:.3g}", f"{w:.4g}", f"{w:.1f}", f"{w:.6e}",
             f"{w * 1.001:.6g}", f"{w * 1.02:.6g}", f"{w * 1.3:.6g}", f"{-w:.6g}",
             f"{w * 1.0005:.3g}", f"{w:.0f}", "0", "1", "1e400", "abc", "", "  ",
             "1,5", "--1", ".5", "5.", "+3", "\u22121.5"]
    cases += [f"{v:.6g}" for v, _ in check.hints] + [f"{v * 1.005:.6g}" for v, _ in check.hints]
    return cases


def python_verdict(check: NumberCheck, text: str):
    """What the notebook's checker says for the number the reader typed (None: not one).

    Zeros typed at the end of the decimals (1.60) count in the page but not in the
    notebook, where the float has dropped them: those texts are left out (tested below).
    """
    t = text.strip().replace("\u2212", "-")
    try:
        value = float(t)
    except ValueError:
        return None
    if not math.isfinite(value) or "," in t or "--" in t:
        return None
    return check.judge(value)


@needs_js
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"want={c.want:g}")
def test_the_pages_judge_agrees_with_the_notebooks(check):
    cases = typed_cases(check)
    got = run_js({"judge": {"check": check.to_dict(), "cases": cases}})["judge"]
    for text, verdict in zip(cases, got):
        if re.search(r"\.\d*0$", text.strip()):
            continue
        want = python_verdict(check, text)
        if want is None:   # not a number: the page says so, and never says right
            assert verdict["right"] is False and "number" in verdict["message"].lower() or \
                "Not answered" in verdict["message"], (text, verdict)
        else:
            assert (verdict["right"], verdict["message"]) == want, text
    assert any(v["right"] for v in got) and not all(v["right"] for v in got)


@needs_js
def test_the_judge_never_gives_the_answer_away():
    check = CHECKS[0]
    got = run_js({"judge": {"check": check.to_dict(), "cases": typed_cases(check)}})["judge"]
    for verdict in got:
        assert "0.318" not in verdict["message"]


# -- the chapters' explorers ---------------------------------------------------------------
def test_principal_axes_are_the_codes_spread():
    rng = np.random.default_rng(7)
    codes = rng.standard_normal((4000, 3)) * [3.0, 1.0, 0.2] + [1.0, -2.0, 0.5]
    centre, axes, spreads = web.principal_axes(codes, 2)
    np.testing.assert_allclose(centre, [1.0, -2.0, 0.5], atol=0.1)
    np.testing.assert_allclose(np.abs(axes), [[1, 0, 0], [0, 1, 0]], atol=0.02)
    np.testing.assert_allclose(spreads, [3.0, 1.0], rtol=0.05)


def test_frames_are_stored_in_the_order_the_page_reads_them(tmp_path):
    html = web.frames("t-grid", lambda a, b: np.full((2, 3), (10 * a + b) / 100),
                      {"a": [0, 1, 2], "b": [5, 6]}, start={"a": 1.2, "b": 6},
                      folder=tmp_path)
    asset = web.read_asset(tmp_path / "t-grid.js")
    images = web.decode_array(asset["frames"])
    assert images.shape == (6, 2, 3) and asset["start"] == [1, 1]
    for i, a in enumerate([0, 1, 2]):
        for j, b in enumerate([5, 6]):
            want = (10 * a + b) / 100                              # the last factor fastest
            assert abs(images[i * 2 + j, 0, 0] - want) <= 0.5 / 255   # 256 grey levels
    assert 'data-kind="frames"' in html and "t-grid" in html


def test_the_explorers_refuse_what_they_cannot_show(tmp_path):
    with pytest.raises(ValueError, match="needs a 2-D latent space; got latent_dim 3"):
        web.latent_plane(small_vae(), "x", np.zeros((2, 3)), [0, 1], folder=tmp_path)
    with pytest.raises(ValueError, match="2 names for 3 codes"):
        web.interpolation(small_vae(), "x", np.zeros((3, 3)), ["a", "b"], folder=tmp_path)
    assert not list(tmp_path.iterdir())                        # nothing half-written


@needs_js
def test_the_page_counts_the_zeros_the_reader_typed():
    check = NumberCheck(1.58698, digits=3, fallback="f").to_dict()
    got = run_js({"judge": {"check": check, "cases": ["1.60", "1.6", "1.590", "1.5870"]}})
    messages = [v["message"] for v in got["judge"]]
    assert messages[0].startswith("Close, but not right")     # three digits, the last wrong
    assert "more digits" in messages[1]                        # two digits, rounded right
    assert [v["right"] for v in got["judge"]] == [False, False, False, True]
