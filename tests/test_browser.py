"""The static pages in a real browser: playwright driving Debian's Chromium.

Two kinds of test:

* a page made here from book/web/vae-book.js and small models, opened from
  ``file://``: every explorer draws, follows its control, and draws NumPy's pixels;
  every answer box says what the notebook's checker says;
* the built book (``_build/html``, after ``python3 dev.py book``): every page loads
  with no console error, no request outside localhost and no missing file, every
  explorer and answer box starts, and the decoders draw what NumPy computes from
  the weights the page loaded.

Without Chromium or playwright every test here skips with one line saying what is
missing; .ci/run installs both, so they never skip there. Without a built book only
the second kind skips.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vae_numpy import web
from vae_numpy.exercises import NumberCheck
from vae_numpy.losses import kl_divergence
from vae_numpy.model import VAE, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "book" / "web" / "vae-book.js"
BUILT = ROOT / "_build" / "html"
_spec = importlib.util.spec_from_file_location("screenshot_book",
                                               ROOT / "tools" / "screenshot_book.py")
screenshot_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot_book)
CHROMIUM = os.environ.get("VAE_NUMPY_CHROMIUM") or shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

# In CI (CI=true) a missing browser or book fails the run instead: .ci/run provides both.
IN_CI = os.environ.get("CI") == "true"
MISSING = ("playwright is not installed (pip install playwright)" if sync_playwright is None
           else "Chromium is not installed (apt-get install chromium)" if CHROMIUM is None
           else None)
if MISSING and IN_CI:
    raise RuntimeError(f"CI=true but {MISSING}")
if MISSING:
    pytestmark = pytest.mark.skip(reason=MISSING)


@pytest.fixture(scope="module")
def driver():
    """One playwright for the module (two at a time refuse to start)."""
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(driver):
    b = driver.chromium.launch(executable_path=CHROMIUM, args=screenshot_book.CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser):
    """A 1280 px page that records console errors and every request it makes."""
    pg = screenshot_book.open_page(browser)
    yield pg
    pg.context.close()


def explorer_state(root) -> dict:
    """An explorer's last state (el.vaeState), with typed arrays as lists."""
    return root.evaluate("""e => { const s = e.vaeState, out = {};
        for (const k in s) out[k] = ArrayBuffer.isView(s[k]) ? Array.from(s[k]) : s[k];
        return out; }""")


def canvas_grey(pg, selector, shape):
    """The red channel at the centre of each image pixel of a digit canvas."""
    return np.array(pg.evaluate("""([sel, rows, cols]) => {
        const c = document.querySelector(sel), ctx = c.getContext("2d"), out = [];
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        for (let r = 0; r < rows; r++) for (let q = 0; q < cols; q++) {
          const x = Math.floor((q + 0.5) * c.width / cols);
          const y = Math.floor((r + 0.5) * c.height / rows);
          out.push(d[4 * (y * c.width + x)]); }
        return out; }""", [selector, *shape]), dtype=float)


def set_range(pg, selector, value):
    """Move a range input as a reader would: set its value and fire 'input'."""
    pg.eval_on_selector(selector, """(e, v) => { e.value = v;
        e.dispatchEvent(new Event("input", {bubbles: true})); }""", value)


# -- a page made here -------------------------------------------------------------------------
def small_model(latent_dim, seed):
    model = VAE(ModelConfig(input_dim=784, hidden_dims=(32,), latent_dim=latent_dim), rng=seed)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p[...] = rng.standard_normal(p.shape).astype(p.dtype) * 0.3
    return model


CHECK = NumberCheck(0.5 * (1.0 + 0.25 - 1 - np.log(0.25)), digits=3,
                    hints=[(0.5, "That is the mean term alone.")], success="Both terms.",
                    fallback="Use (7.3).")


@pytest.fixture(scope="module")
def made_page(tmp_path_factory):
    """A page with one explorer of every kind and an answer box, as file:// URL."""
    site = tmp_path_factory.mktemp("site")
    (site / "_static").mkdir()
    shutil.copy(SCRIPT, site / "_static" / "vae-book.js")
    shutil.copy(SCRIPT.with_suffix(".css"), site / "_static" / "vae-book.css")
    assets = site / "_static" / "assets"
    m2, m5 = small_model(2, 0), small_model(5, 1)
    web.export_asset("t-dec2", web.decoder_asset(m2), folder=assets)
    web.export_asset("t-dec5", web.decoder_asset(m5), folder=assets)
    frames = np.random.default_rng(4).random((3, 2, 28 * 28))
    web.export_asset("t-frames", {"frames": web.encode_array(frames, grey=True),
                                  "grid": [[0, 1, 2], [5, 6]],
                                  "names": ["a", "b"], "start": [1, 0],
                                  "image_shape": [28, 28]}, folder=assets)
    rng = np.random.default_rng(5)
    codes5 = rng.standard_normal((4, 5))
    pca = np.linalg.qr(rng.standard_normal((5, 2)))[0].T
    parts = [
        web.explorer("latent-plane", asset="t-dec2", lim=3.0, start=[0.5, -0.5],
                     codes=web.encode_array(rng.standard_normal((50, 2))),
                     labels=rng.integers(0, 10, 50).tolist()),
        web.explorer("latent-sliders", asset="t-dec5", centre=web.encode_array(np.zeros(5)),
                     directions=web.encode_array(pca), scales=[1.5, 0.7], names=["PC1", "PC2"],
                     range=3.0),
        web.explorer("interpolation", asset="t-dec5", codes=web.encode_array(codes5),
                     names=["a", "b", "c", "d"], start=[0, 2]),
        web.explorer("kl", mu=1.0, sigma=0.5),
        web.explorer("reparam", mu=0.0, sigma=1.0,
                     eps=web.encode_array(np.random.default_rng(6).standard_normal(500))),
        web.explorer("frames", asset="t-frames"),
        web.answer_box(CHECK, label="KL in nats", variable="answer_ex1"),
    ]
    body = "\n".join(f'<div id="x{i}">{p}</div>' for i, p in enumerate(parts))
    (site / "page.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8">'
        '<link rel="stylesheet" href="_static/vae-book.css">'
        f'<script src="_static/vae-book.js"></script></head><body>{body}</body></html>')
    return {"url": (site / "page.html").as_uri(), "m2": m2, "m5": m5, "codes5": codes5,
            "pca": pca, "frames": frames}


def open_made(page, made_page):
    page.goto(made_page["url"])
    page.wait_for_function("window.VAE_BOOK && window.VAE_BOOK.ready")
    page.evaluate("window.VAE_BOOK.ready")
    assert page.eval_on_selector_all("div.vae-explorer.vae-ready", "e => e.length") == 6
    assert page.problems == [], page.problems


def test_latent_plane_follows_the_pointer_and_draws_numpys_digit(page, made_page):
    open_made(page, made_page)
    m2 = made_page["m2"]
    s = explorer_state(page.locator("#x0 .vae-explorer"))
    assert s["z"] == [0.5, -0.5]
    np.testing.assert_allclose(s["image"], web.decoded_images(m2, [s["z"]])[0], atol=1e-5)
    box = page.locator("#x0 canvas.vae-plane").bounding_box()
    page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.25 * box["height"])
    moved = explorer_state(page.locator("#x0 .vae-explorer"))
    np.testing.assert_allclose(moved["z"], [0.6 * 3.0, 0.5 * 3.0], atol=0.05)
    want = web.decoded_images(m2, [moved["z"]])[0]
    np.testing.assert_allclose(moved["image"], want, atol=1e-5)
    grey = canvas_grey(page, "#x0 canvas.vae-digit", (28, 28))
    np.testing.assert_allclose(grey, np.round(255 * (1 - want)), atol=1)   # what is painted
    assert "decoded z = (+1.80, +1.50)" in page.inner_text("#x0 .vae-caption")
    assert moved["ms"] < 50                                                # follows the pointer


def test_sliders_and_interpolation_decode_the_code_they_show(page, made_page):
    open_made(page, made_page)
    m5, pca = made_page["m5"], made_page["pca"]
    set_range(page, "#x1 input[aria-label=PC2]", -2.0)
    s = explorer_state(page.locator("#x1 .vae-explorer"))
    np.testing.assert_allclose(s["z"], -2.0 * 0.7 * pca[1], atol=1e-6)
    np.testing.assert_allclose(s["image"], web.decoded_images(m5, [s["z"]])[0], atol=1e-5)

    codes = made_page["codes5"]
    set_range(page, "#x2 input[aria-label=t]", 0.25)
    page.select_option("#x2 select[aria-label=to]", "3")
    s = explorer_state(page.locator("#x2 .vae-explorer"))
    np.testing.assert_allclose(s["z"], 0.75 * codes[0] + 0.25 * codes[3], atol=1e-6)
    np.testing.assert_allclose(s["image"], web.decoded_images(m5, [s["z"]])[0], atol=1e-5)
    assert "t = 0.25 from a to d" in page.inner_text("#x2 .vae-caption")


def test_kl_and_reparameterization_explorers_compute_what_the_library_does(page, made_page):
    open_made(page, made_page)
    before = page.eval_on_selector("#x3 canvas", "c => c.toDataURL()")
    set_range(page, "#x3 input[aria-label=μ]", -1.5)
    set_range(page, "#x3 input[aria-label=σ]", 2.0)
    s = explorer_state(page.locator("#x3 .vae-explorer"))
    mu, log_var = np.array([[-1.5]]), np.log(np.array([[2.0**2]]))
    assert s["kl"] == pytest.approx(float(kl_divergence(mu, log_var)[0]), rel=1e-12)
    assert page.eval_on_selector("#x3 canvas", "c => c.toDataURL()") != before
    assert f"{s['kl']:.4f}" in page.inner_text("#x3 .vae-caption")

    set_range(page, "#x4 input[aria-label=μ]", 1.0)
    set_range(page, "#x4 input[aria-label=σ]", 0.5)
    s = explorer_state(page.locator("#x4 .vae-explorer"))
    eps = np.random.default_rng(6).standard_normal(500).astype(np.float32)
    np.testing.assert_allclose(s["z"], 1.0 + 0.5 * eps.astype(float), atol=1e-12)


def test_frames_explorer_shows_the_frame_of_its_factors(page, made_page):
    open_made(page, made_page)
    set_range(page, "#x5 input[aria-label=a]", 2)
    set_range(page, "#x5 input[aria-label=b]", 1)
    s = explorer_state(page.locator("#x5 .vae-explorer"))
    assert s["values"] == [2, 6]
    np.testing.assert_allclose(s["image"], made_page["frames"][2, 1], atol=0.5 / 255 + 1e-7)


def test_answer_box_says_what_the_notebooks_checker_says(page, made_page):
    open_made(page, made_page)
    for typed in (f"{CHECK.want:.3f}", "0.5", "0.45", "abc", "", f"{CHECK.want * 1.01:.4f}",
                  "-inf", "inf", "nan", "-Infinity"):
        page.fill("#x6 input", typed)
        page.click("#x6 button")
        verdict = page.inner_text("#x6 .vae-verdict")
        try:
            want = CHECK.judge(float(typed))[1]
        except ValueError:
            assert "number" in verdict.lower() or "Not answered" in verdict
            continue
        assert verdict == want, typed
    page.fill("#x6 input", f"{CHECK.want:.3f}")
    page.press("#x6 input", "Enter")
    assert page.inner_text("#x6 .vae-verdict").startswith("Right.")


# -- the built book ---------------------------------------------------------------------------
def built_pages() -> list[str]:
    if not (BUILT / "index.html").exists():
        return []
    return screenshot_book.toc_pages(ROOT / "_toc.yml")


NO_BOOK = "the book is not built (python3 dev.py book writes _build/html)"
if IN_CI and not MISSING and not built_pages():
    raise RuntimeError(f"CI=true but {NO_BOOK}: .ci/run builds it before the tests")
needs_book = pytest.mark.skipif(not built_pages(), reason=NO_BOOK)


@pytest.fixture(scope="module")
def site(driver):
    """The built book on 127.0.0.1, and a proxy that refuses everything else."""
    server = screenshot_book.serve(functools.partial(screenshot_book.SiteHandler,
                                                     directory=str(BUILT)))
    proxy = screenshot_book.serve(screenshot_book.RefusingProxy)
    b = screenshot_book.launch(driver, CHROMIUM, proxy.server_address[1])
    yield b, f"http://127.0.0.1:{server.server_address[1]}"
    b.close()
    server.shutdown()
    proxy.shutdown()


def check_built_explorer(root) -> None:
    """An explorer of the built book follows its first control and computes what NumPy does."""
    kind = root.get_attribute("data-kind")
    settings = json.loads(root.get_attribute("data-settings"))
    before = explorer_state(root)
    if kind == "latent-plane":                 # moved by the pointer, not a control
        control = root.locator("canvas.vae-plane")
        box = control.bounding_box()
        control.hover(position={"x": 0.8 * box["width"], "y": 0.25 * box["height"]})
    elif (control := root.locator("input[type=range], select").first).evaluate(
            "e => e.tagName") == "SELECT":
        control.select_option(index=1 if control.input_value() != "1" else 2)
    else:
        control.evaluate("""e => { e.value = Number(e.min) + 0.7 * (e.max - e.min);
            e.dispatchEvent(new Event("input", {bubbles: true})); }""")
    after = explorer_state(root)
    assert after != before, f"{kind}: moving {control} changed nothing"
    asset = settings.get("asset")
    data = web.read_asset(BUILT / "_static" / "assets" / f"{asset}.js") if asset else {}
    if data.get("kind") == "decoder":                    # the page draws NumPy's image
        for s in (before, after):
            np.testing.assert_allclose(s["image"], web.decode_asset(data, s["z"])[0],
                                       atol=1e-5)
        assert after["ms"] < 50, f"{kind}: one decode took {after['ms']:.1f} ms"
    elif data.get("kind") == "frames":
        frames = web.decode_array(data["frames"])
        flat = int(np.ravel_multi_index(after["index"], [len(g) for g in data["grid"]]))
        np.testing.assert_allclose(after["image"], frames[flat].ravel(), atol=1e-6)
    elif kind == "kl":
        mu, log_var = np.array([[after["mu"]]]), np.log(np.array([[after["sigma"] ** 2]]))
        assert after["kl"] == pytest.approx(float(kl_divergence(mu, log_var)[0]), rel=1e-9)
    elif kind == "reparam":
        eps = web.decode_array(settings["eps"]).astype(float)
        np.testing.assert_allclose(after["z"], after["mu"] + after["sigma"] * eps, atol=1e-12)


def check_built_answer_box(box) -> None:
    """A box of the built book accepts its answer, rejects a likely mistake with its hint,
    and says so when the text is not a number, as the notebook's NumberCheck does."""
    spec = json.loads(box.get_attribute("data-check"))
    check = NumberCheck(**{k: v for k, v in spec.items() if k != "hints"},
                        hints=[tuple(h) for h in spec["hints"]])
    tries = [repr(spec["want"]), "not a number"]
    tries += [repr(value) for value, _ in spec["hints"]]
    for typed in tries:
        box.locator("input").fill(typed)
        box.locator("button").click()
        verdict = box.locator(".vae-verdict").inner_text()
        if typed == "not a number":
            assert "Expected one number" in verdict, verdict
            continue
        assert verdict == check.judge(float(typed))[1], (typed, verdict)
    assert check.judge(spec["want"])[0] and spec["hints"], "a box without hints"


@needs_book
@pytest.mark.parametrize("name", built_pages() or ["(none)"])
def test_built_page_loads_cleanly_and_computes(name, site):
    browser, base = site
    page = screenshot_book.open_page(browser)
    try:
        html_file = BUILT / f"{name}.html"
        problems = screenshot_book.page_problems(page, f"{base}/{name}.html", html_file)
        assert problems == [], problems
        assert "thebe" not in html_file.read_text(encoding="utf-8").lower()
        for root in page.locator("div.vae-explorer").all():
            check_built_explorer(root)
        for box in page.locator("div.vae-answer").all():
            check_built_answer_box(box)
    finally:
        page.context.close()


@needs_book
def test_a_built_page_computes_from_file_urls_too(browser):
    """Opened from the folder, not a server: the assets load through <script> tags."""
    page = screenshot_book.open_page(browser)
    try:
        page.goto((BUILT / "book" / "10_latent_space.html").as_uri())
        page.wait_for_function("() => window.VAE_BOOK && window.VAE_BOOK.ready")
        page.evaluate("() => window.VAE_BOOK.ready")
        n = page.eval_on_selector_all("div.vae-explorer", "e => e.length")
        assert n >= 3 and page.eval_on_selector_all("div.vae-explorer.vae-ready",
                                                    "e => e.length") == n
        assert not any("vae-book" in p or "assets" in p for p in page.problems), page.problems
    finally:
        page.context.close()
