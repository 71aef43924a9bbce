"""Screenshot every page of the built book, whole, and check that it works offline.

    python3 dev.py screenshots        (after `python3 dev.py book`)

For each page in _toc.yml this serves _build/html on 127.0.0.1, opens the page in
headless Chromium (driven by playwright) at 1280 px wide, waits for MathJax and for
vae-book.js to build the explorers and answer boxes, saves a PNG of the whole page in
_build/screenshots/, and checks that

- MathJax typeset the page's math (<mjx-container> elements, and no TeX errors),
- every explorer and answer box of the page started (vae-book.js marks them ready),
- the page logged no error or warning in the console and threw no exception,
- every file the page asked for of the local server exists (a 404 is a missing
  font, image or script),
- the page requested nothing outside localhost: every request it made is recorded,
  and Chromium's proxy is a local one that refuses everything, so nothing leaves
  the machine even where there is a network. The DOM is also searched for scripts,
  styles, images and frames with remote addresses.

It exits 1 and lists the failing pages if any check fails. tests/test_browser.py runs
the same checks (:func:`page_problems`) on every page. Needs PyYAML and playwright (in
.venv) and Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
import urllib.parse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
]
VIEWPORT = {"width": 1280, "height": 900}
# Tags that make the browser fetch what their src/href names. <a href> is a link, not a fetch.
REMOTE_FETCH = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc=[\"'](?:https?:)?//(?P<a>[^/\"']+)"
    r"|<link\b(?=[^>]*\brel=[\"'](?:stylesheet|preload|modulepreload|icon|prefetch)[\"'])"
    r"[^>]*\bhref=[\"'](?:https?:)?//(?P<b>[^/\"']+)",
    re.IGNORECASE)


def is_local(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname
    return host is None or host in ("127.0.0.1", "localhost")  # None: data:, blob:


def toc_pages(toc_file: Path) -> list[str]:
    """Docnames in reading order: the root, then every file of every part."""
    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [str(Path(p).with_suffix("")) for p in pages]


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built site and notes what a page asked for that is not there."""

    missing: list[str] = []

    def log_request(self, code="-", size="-"):
        # Chromium asks every site for /favicon.ico; the book has none.
        if str(code).startswith("4") and self.path != "/favicon.ico":
            SiteHandler.missing.append(self.path)

    def log_message(self, *args):
        pass


class RefusingProxy(http.server.BaseHTTPRequestHandler):
    """Chromium's proxy: anything not for loopback comes here and is refused."""

    def _refuse(self):
        self.send_error(403, "offline check: remote request refused")

    do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = do_CONNECT = _refuse

    def log_message(self, *args):
        pass


def serve(handler) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check_dom(html: str, dom: str) -> list[str]:
    """Problems visible in the DOM after scripts ran (`html` is the page as built)."""
    problems = []
    if 'class="math' in html:
        if "<mjx-container" not in dom:
            problems.append("page has math but MathJax typeset none (no <mjx-container>)")
        errors = re.findall(r'data-mjx-error="([^"]*)"', dom)
        if errors or "<mjx-merror" in dom:
            problems.append(f"MathJax reported TeX errors: {sorted(set(errors))}")
    for kind in ("vae-explorer", "vae-answer"):
        made = len(re.findall(rf'<div class="{kind}\b', html))
        ready = len(re.findall(rf'<div class="{kind}\b[^"]*\bvae-ready', dom))
        if ready != made:
            problems.append(f"{ready} of the page's {made} {kind} elements started")
    # One cell's printed lines belong in one box (nb_merge_streams); a loop that prints
    # would otherwise show one box per line.
    for n, cell in enumerate(re.split(r'<div class="cell\b', html)[1:], 1):
        boxes = len(re.findall(r'class="output stream\b', cell))
        if boxes > 1:
            problems.append(f"code cell {n} shows its printed output in {boxes} boxes")
    hosts = {m.group("a") or m.group("b") for m in REMOTE_FETCH.finditer(dom)}
    remote = sorted(h for h in hosts if not is_local(f"http://{h}/"))
    if remote:
        problems.append(f"DOM loads resources from {remote}")
    return problems


def launch(playwright, binary: str, proxy_port: int):
    """Headless Chromium whose proxy refuses every request that is not for loopback."""
    return playwright.chromium.launch(
        executable_path=binary, args=CHROMIUM_ARGS,
        proxy={"server": f"http://127.0.0.1:{proxy_port}", "bypass": "127.0.0.1,localhost"})


def open_page(browser):
    """A fresh 1280 px page (nothing cached) that records its errors and requests."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.problems, page.requests = [], []
    page.on("pageerror", lambda e: page.problems.append(f"exception: {e}"))
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("response", lambda r: page.problems.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    return page


def page_problems(page, url: str, html_file: Path, png: Path | None = None) -> list[str]:
    """Open ``url`` in ``page`` (from :func:`open_page`); return what is wrong with it.

    With ``png``, also save a screenshot of the whole page there.
    """
    SiteHandler.missing.clear()
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("() => window.VAE_BOOK && window.VAE_BOOK.ready", timeout=20_000)
    page.evaluate("() => window.VAE_BOOK.ready")
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    problems = list(page.problems)
    if png is not None:
        png.unlink(missing_ok=True)
        page.screenshot(path=str(png), full_page=True)
        if not png.exists() or png.stat().st_size == 0:
            problems.append("no screenshot written")
    problems += check_dom(html_file.read_text(encoding="utf-8"), page.content())
    remote = sorted(u for u in page.requests if not is_local(u))
    if remote:
        problems.append(f"requested from outside localhost: {remote}")
    if SiteHandler.missing:
        problems.append(f"asked for files the build lacks: {sorted(set(SiteHandler.missing))}")
    return problems


DECODE_TIMES_JS = """() => {
  // Move every decoder explorer's first control (or its plane) 40 times; keep each
  // redraw's decode time (vae-book.js records it in el.vaeState.ms; the browser's timer
  // is coarse, about 0.1 ms) and the mean time of a whole redraw, decode and painting.
  const out = [];
  for (const root of document.querySelectorAll("div.vae-explorer")) {
    if (!root.vaeState || root.vaeState.ms === undefined) continue;
    const times = [];
    const t0 = performance.now();
    const control = root.querySelector("input[type=range]");
    const plane = root.querySelector("canvas.vae-plane");
    for (let i = 0; i < 40; i++) {
      const f = (i + 0.5) / 40;
      if (plane) {
        const r = plane.getBoundingClientRect();
        plane.dispatchEvent(new PointerEvent("pointermove", {clientX: r.left + f * r.width,
                                                             clientY: r.top + (1 - f) * r.height}));
      } else if (control) {
        control.value = Number(control.min) + f * (control.max - control.min);
        control.dispatchEvent(new Event("input", {bubbles: true}));
      } else break;
      times.push(root.vaeState.ms);
    }
    const redraw = (performance.now() - t0) / Math.max(1, times.length);
    times.sort((a, b) => a - b);
    if (times.length) out.push({kind: root.dataset.kind, n: times.length, redraw: redraw,
                                median: times[times.length >> 1], max: times[times.length - 1]});
  }
  return out;
}"""


def decode_times(page) -> list[dict]:
    """Milliseconds per decode of each decoder explorer of the open page, 40 redraws each."""
    return page.evaluate(DECODE_TIMES_JS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "screenshots")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)

    if not (args.html / "index.html").exists():
        sys.exit(f"no built book in {args.html}: run `python3 dev.py book` first")
    if not Path(args.chromium).exists():
        sys.exit(f"no Chromium at {args.chromium}: on Debian, `apt-get install -y chromium`")
    args.out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    site = serve(functools.partial(SiteHandler, directory=str(args.html)))
    proxy = serve(RefusingProxy)
    failures: dict[str, list[str]] = {}
    try:
        with sync_playwright() as p:
            browser = launch(p, args.chromium, proxy.server_address[1])
            for name in toc_pages(args.toc):
                html_file = args.html / f"{name}.html"
                png = args.out / (name.replace("/", "__") + ".png")
                if html_file.exists():
                    page = open_page(browser)
                    url = f"http://127.0.0.1:{site.server_address[1]}/{name}.html"
                    problems = page_problems(page, url, html_file, png)
                    for t in decode_times(page):
                        print(f"     {t['kind']}: one decode {t['median']:.1f} ms (median of "
                              f"{t['n']}, at most {t['max']:.1f}); a whole redraw "
                              f"{t['redraw']:.2f} ms on average", flush=True)
                    page.context.close()
                else:
                    problems = [f"not built: {html_file} is missing"]
                print(f"{'FAIL' if problems else 'ok  '} {name} -> {png}", flush=True)
                if problems:
                    failures[name] = problems
            browser.close()
    finally:
        site.shutdown()
        proxy.shutdown()

    if failures:
        print(f"\n{len(failures)} page(s) failed:", file=sys.stderr)
        for page, problems in failures.items():
            for problem in problems:
                print(f"  {page}: {problem}", file=sys.stderr)
        return 1
    print(f"\nAll pages passed; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
