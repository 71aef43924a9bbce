"""A local Sphinx extension for the book: no Thebe, and the book's own scripts.

Jupyter Book 1.x always loads sphinx-thebe, which puts a Binder configuration for a
placeholder repository into every page and declares ``THEBE_JS_URL`` twice (a
SyntaxError in the console). The book runs nothing on a remote kernel, so this
extension takes sphinx-thebe's event handlers and stylesheet back out. It also adds
``vae-book.js`` and ``vae-book.css`` (book/web/, copied into _static/) to every page,
and opens pages in the light theme: the page template reads ``default_mode``, which
nothing else sets, and an empty one logs "Got invalid theme mode" in the console.
"""

from __future__ import annotations


def _drop_thebe(app) -> None:
    for listeners in app.events.listeners.values():
        listeners[:] = [x for x in listeners
                        if getattr(x.handler, "__module__", "") != "sphinx_thebe"]
    app.registry.css_files = [(name, attrs) for name, attrs in app.registry.css_files
                              if "thebe" not in str(name)]


def _light_mode(app, config) -> None:
    config.html_context.setdefault("default_mode", "light")   # the figures are on white


def setup(app):
    _drop_thebe(app)
    app.connect("config-inited", _light_mode)
    app.add_js_file("vae-book.js")
    app.add_css_file("vae-book.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
