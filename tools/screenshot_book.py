"""Screenshot every page of the built book and check that it works offline.

    python3 dev.py screenshots        (after `python3 dev.py book`)

For each page in _toc.yml this serves _build/html on 127.0.0.1, opens the page in
headless Chromium twice (once for a PNG in _build/screenshots/, once for the DOM
after scripts ran) and checks that

- MathJax typeset the page's math (<mjx-container> elements, and no TeX errors),
- embedded widgets were drawn by the widget JavaScript,
- every file the page asked for of the local server exists (a 404 is a missing
  font, image or script),
- the page requested nothing outside localhost. Chromium writes a NetLog, and every
  request the page made (it carries the page's site in its network isolation key,
  unlike Chromium's own update checks and account lookups) must be for 127.0.0.1.
  The DOM is also searched for scripts, styles, images and frames with remote
  addresses. Chromium's proxy is a local one that refuses everything, so nothing
  leaves the machine even where there is a network.

It exits 1 and lists the failing pages if any check fails. Needs PyYAML (in .venv)
and Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
    "--virtual-time-budget=8000", "--window-size=1280,2400",
]
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


def page_requests(netlog: Path) -> set[str]:
    """URLs requested on behalf of a page served from 127.0.0.1, read from a NetLog."""
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = set()
    for event in log["events"]:
        params = event.get("params") or {}
        # The key is "<top-frame site> <frame site>"; Chromium's own traffic has
        # "null null" or a Google site there, so it is not counted against the page.
        top_site = params.get("network_isolation_key", "").split(" ")[0]
        if event["type"] == start_job and "url" in params and top_site == "http://127.0.0.1":
            urls.add(params["url"])
    return urls


def chromium(binary: str, proxy_port: int, *args: str) -> tuple[subprocess.CompletedProcess, set]:
    """Run Chromium once; return the run and the URLs the page requested (None: no log)."""
    # A fresh profile per call: nothing cached from an earlier page can hide a fetch.
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        run = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
             f"--log-net-log={tmp}/netlog.json",
             f"--proxy-server=http://127.0.0.1:{proxy_port}", *args],
            capture_output=True, text=True, timeout=120)
        try:
            requested = page_requests(Path(tmp, "netlog.json"))
        except (OSError, ValueError, KeyError):
            requested = None
    return run, requested


def check_dom(html: str, dom: str) -> list[str]:
    """Problems visible in the DOM after scripts ran (`html` is the page as built)."""
    problems = []
    if 'class="math' in html:
        if "<mjx-container" not in dom:
            problems.append("page has math but MathJax typeset none (no <mjx-container>)")
        errors = re.findall(r'data-mjx-error="([^"]*)"', dom)
        if errors or "<mjx-merror" in dom:
            problems.append(f"MathJax reported TeX errors: {sorted(set(errors))}")
    # The widget renderer wraps each widget it draws in a new div.widget-subarea.
    if "application/vnd.jupyter.widget-view+json" in html and 'class="widget-subarea"' not in dom:
        problems.append("page has widgets but the widget JavaScript drew none")
    hosts = {m.group("a") or m.group("b") for m in REMOTE_FETCH.finditer(dom)}
    remote = sorted(h for h in hosts if not is_local(f"http://{h}/"))
    if remote:
        problems.append(f"DOM loads resources from {remote}")
    return problems


def check_page(binary: str, proxy_port: int, url: str, html_file: Path, png: Path) -> list[str]:
    """Screenshot one page into `png`; return what is wrong with it."""
    png.unlink(missing_ok=True)
    SiteHandler.missing.clear()
    shot, shot_urls = chromium(binary, proxy_port, f"--screenshot={png}", url)
    dom, dom_urls = chromium(binary, proxy_port, "--dump-dom", url)
    problems = [f"chromium exited {run.returncode}: {run.stderr.strip()[-500:]}"
                for run in (shot, dom) if run.returncode != 0]
    if not png.exists() or png.stat().st_size == 0:
        problems.append("no screenshot written")
    problems += check_dom(html_file.read_text(encoding="utf-8"), dom.stdout)
    if shot_urls is None or dom_urls is None:
        problems.append("Chromium wrote no readable NetLog: its requests cannot be checked")
    remote = sorted(u for u in (shot_urls or set()) | (dom_urls or set()) if not is_local(u))
    if remote:
        problems.append(f"requested from outside localhost: {remote}")
    if SiteHandler.missing:
        problems.append(f"asked for files the build lacks: {sorted(set(SiteHandler.missing))}")
    return problems


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

    site = serve(functools.partial(SiteHandler, directory=str(args.html)))
    proxy = serve(RefusingProxy)
    failures: dict[str, list[str]] = {}
    try:
        for page in toc_pages(args.toc):
            html_file = args.html / f"{page}.html"
            png = args.out / (page.replace("/", "__") + ".png")
            if html_file.exists():
                url = f"http://127.0.0.1:{site.server_address[1]}/{page}.html"
                problems = check_page(args.chromium, proxy.server_address[1], url, html_file, png)
            else:
                problems = [f"not built: {html_file} is missing"]
            print(f"{'FAIL' if problems else 'ok  '} {page} -> {png}", flush=True)
            if problems:
                failures[page] = problems
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
