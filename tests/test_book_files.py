"""The chapters are committed clean and the table of contents matches them.

Outputs are not committed: the book build and nbval execute every chapter, so saved
outputs would only be stale copies (and nbval --nbval-lax ignores them anyway).
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
CLEAR = ("clear all outputs and save (JupyterLab: Edit > Clear Outputs of All Cells;"
         " or `jupyter nbconvert --clear-output --inplace {}`)")


def toc_entries() -> list[str]:
    """Every `root` and `file` entry of _toc.yml, in reading order (the screenshot tool's walk)."""
    spec = importlib.util.spec_from_file_location("screenshot_book",
                                                  ROOT / "tools" / "screenshot_book.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.toc_pages(ROOT / "_toc.yml")


def source_of(entry: str) -> Path | None:
    """The file a toc entry names; Jupyter Book lets the suffix be left out."""
    path = ROOT / entry
    candidates = [path] if path.suffix else [path.with_suffix(s) for s in (".md", ".ipynb")]
    return next((p for p in candidates if p.is_file()), None)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_runs_on_python3(path):
    rel = path.relative_to(ROOT)
    nb = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"{rel} code cell {index} has outputs: " + CLEAR.format(rel)
        assert cell.get("execution_count") is None, (
            f"{rel} code cell {index} has execution count {cell['execution_count']}: "
            + CLEAR.format(rel))
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    # Any other name fails with NoSuchKernel on a machine where it is not registered.
    assert kernel == "python3", f"{rel} asks for kernel {kernel!r}; set it to 'python3'"


@pytest.mark.parametrize("entry", toc_entries())
def test_toc_entry_exists(entry):
    assert source_of(entry) is not None, f"_toc.yml lists {entry!r} but no such .md/.ipynb exists"


def test_every_chapter_is_in_the_toc():
    # only_build_toc_files: a chapter missing from _toc.yml would silently not be built.
    listed = {source_of(entry) for entry in toc_entries()}
    orphans = [str(p.relative_to(ROOT)) for p in NOTEBOOKS if p not in listed]
    assert not orphans, f"chapters not listed in _toc.yml: {orphans}"
